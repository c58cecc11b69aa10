"""The rendered edge config: what it exposes, how it limits clients, per profile.

Every rendered variant must also pass `envoy --mode validate` (the real binary).
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from shopmesh_edge.policy import PLATFORM_API, PlatformApi, load_edge_policy
from shopmesh_edge.render import PLATFORM_PREFIXES, EdgeSettings, render, render_yaml
from shopmesh_platform.mesh import MeshDeclarationError, load_mesh
from shopmesh_stack.install import envoy_binary
from shopmesh_stack.settings import REPO
from tests.declared import SERVICES


def settings(tmp_path: Path, profile: str = "developer") -> EdgeSettings:
    return EdgeSettings(
        listen_port=18080,
        metrics_port=19901,
        admin_socket=tmp_path / "admin.sock",
        upstream_ports={name: 50051 + i for i, name in enumerate(SERVICES)},
        descriptor=REPO / "gen" / "descriptors" / "shopmesh.binpb",
        access_log=tmp_path / "access.log",
        policy=load_edge_policy(),
        profile=profile,
    )


def listener(config: dict[str, Any], name: str) -> dict[str, Any]:
    return next(x for x in config["static_resources"]["listeners"] if x["name"] == name)


def connection_manager(config: dict[str, Any], name: str) -> dict[str, Any]:
    typed: dict[str, Any] = listener(config, name)["filter_chains"][0]["filters"][0]["typed_config"]
    return typed


def routes_of(config: dict[str, Any], name: str = "edge") -> list[dict[str, Any]]:
    routes: list[dict[str, Any]] = connection_manager(config, name)["route_config"]["virtual_hosts"][0]["routes"]
    return routes


def platform_routes(config: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in routes_of(config) if r["match"].get("prefix") in PLATFORM_PREFIXES]


@pytest.mark.parametrize("profile", ["developer", "production"])
def test_every_profile_renders_a_config_envoy_accepts(tmp_path: Path, profile: str) -> None:
    config_file = tmp_path / "envoy.yaml"
    config_file.write_text(render_yaml(load_mesh(), settings(tmp_path, profile)))
    result = subprocess.run(
        [str(envoy_binary()), "--mode", "validate", "-c", str(config_file)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_admin_is_a_unix_socket_for_its_owner_only(tmp_path: Path) -> None:
    config = render(load_mesh(), settings(tmp_path))
    assert config["admin"]["address"] == {"pipe": {"path": str(tmp_path / "admin.sock"), "mode": 0o600}}
    # Every TCP listener is one of ours; none is admin.
    ports = {x["address"]["socket_address"]["port_value"] for x in config["static_resources"]["listeners"]}
    assert ports == {18080, 19901}


def test_the_metrics_listener_forwards_only_two_read_only_admin_paths(tmp_path: Path) -> None:
    config = render(load_mesh(), settings(tmp_path))
    forwarded = [r for r in routes_of(config, "edge_metrics") if "route" in r]
    assert {r["match"]["path"] for r in forwarded} == {"/ready", "/stats/prometheus"}
    for route in forwarded:
        assert route["match"]["headers"] == [{"name": ":method", "string_match": {"exact": "GET"}}]
    assert routes_of(config, "edge_metrics")[-1]["direct_response"] == {"status": 404}


def test_developer_profile_routes_health_and_reflection_behind_a_budget_and_a_cap(tmp_path: Path) -> None:
    edge = settings(tmp_path)
    config = render(load_mesh(), edge)
    routes = platform_routes(config)
    assert routes, "no health/reflection routes in the developer profile"
    cap = edge.policy.platform_api.max_concurrent_streams
    clusters = {c["name"]: c for c in config["static_resources"]["clusters"]}
    for route in routes:
        assert route["metadata"]["filter_metadata"]["shopmesh.edge"]["rl_class"] == f"anon:{PLATFORM_API}"
        breaker = clusters[route["route"]["cluster"]]["circuit_breakers"]["thresholds"][0]
        assert breaker["max_requests"] == cap
    limiter = next(
        f for f in connection_manager(config, "edge")["http_filters"] if f["name"].endswith("local_ratelimit")
    )
    budgets = {
        (d["entries"][0]["value"], d["entries"][1]["value"]): d["token_bucket"]["max_tokens"]
        for d in limiter["typed_config"]["descriptors"]
    }
    budget = edge.policy.platform_api.budget
    assert budgets[("minute", f"anon:{PLATFORM_API}")] == budget.per_minute
    assert budgets[("hour", f"anon:{PLATFORM_API}")] == budget.per_hour


def test_production_profile_has_no_health_or_reflection_at_the_edge(tmp_path: Path) -> None:
    config = render(load_mesh(), settings(tmp_path, "production"))
    assert platform_routes(config) == []
    assert not [c for c in config["static_resources"]["clusters"] if c["name"].endswith("_platform")]
    # Unrouted gRPC calls answer UNIMPLEMENTED at once instead of waiting in the buffer filter.
    last = routes_of(config)[-1]
    assert {"key": "grpc-status", "value": "12"} in [h["header"] for h in last["response_headers_to_add"]]


def test_connections_are_limited(tmp_path: Path) -> None:
    edge = settings(tmp_path)
    limits = edge.policy.connections
    config = render(load_mesh(), edge)
    hcm = connection_manager(config, "edge")
    assert hcm["request_headers_timeout"] == f"{limits.request_headers_timeout_seconds}s"
    assert hcm["http2_protocol_options"]["max_concurrent_streams"] == limits.max_streams_per_connection
    assert hcm["common_http_protocol_options"]["idle_timeout"] == f"{limits.idle_timeout_seconds}s"
    # The client address is the TCP peer: X-Forwarded-For from clients is not trusted.
    assert hcm["use_remote_address"] is True
    assert hcm["xff_num_trusted_hops"] == 0
    monitors = {m["name"]: m["typed_config"] for m in config["overload_manager"]["resource_monitors"]}
    connections = monitors["envoy.resource_monitors.global_downstream_max_connections"]
    assert connections["max_active_downstream_connections"] == limits.max_downstream_connections


def test_security_headers_come_first_and_drop_the_server_header(tmp_path: Path) -> None:
    config = render(load_mesh(), settings(tmp_path))
    hcm = connection_manager(config, "edge")
    first = hcm["http_filters"][0]
    assert first["name"] == "envoy.filters.http.header_mutation"
    mutations = first["typed_config"]["mutations"]["response_mutations"]
    added = {m["append"]["header"]["key"]: m["append"]["header"]["value"] for m in mutations if "append" in m}
    assert added == {"x-content-type-options": "nosniff", "cache-control": "no-store"}
    assert {"remove": "server"} in mutations
    assert hcm["server_header_transformation"] == "PASS_THROUGH"


def test_request_headers_grpc_cannot_carry_are_dropped_and_malformed_protocol_headers_refused(
    tmp_path: Path,
) -> None:
    hcm = connection_manager(render(load_mesh(), settings(tmp_path)), "edge")
    request_mutations = hcm["http_filters"][0]["typed_config"]["mutations"]["request_mutations"]
    patterns = [m["remove_on_match"]["key_matcher"]["safe_regex"]["regex"] for m in request_mutations]
    assert patterns == [".*[^0-9a-z_.:-].*", ".*-bin"]
    first_routes = hcm["route_config"]["virtual_hosts"][0]["routes"][:4]
    assert [r["name"] for r in first_routes] == [
        "malformed-grpc-timeout-grpc",
        "malformed-grpc-timeout",
        "malformed-grpc-encoding-grpc",
        "malformed-grpc-encoding",
    ]
    assert first_routes[1]["direct_response"]["status"] == 400
    grpc_status = {h["header"]["key"]: h["header"]["value"] for h in first_routes[0]["response_headers_to_add"]}
    assert grpc_status["grpc-status"] == "3"


def test_platform_api_declaration_is_checked() -> None:
    assert PlatformApi.parse({}).profiles == ("developer",)
    with pytest.raises(MeshDeclarationError, match="profiles"):
        PlatformApi.parse({"profiles": ["staging"]})
    with pytest.raises(MeshDeclarationError, match="max_concurrent_streams"):
        PlatformApi.parse({"max_concurrent_streams": 0})


def test_platform_api_budget_can_be_overridden_per_instance() -> None:
    policy = load_edge_policy(rate_limit_overrides='{"platform_api": {"per_minute": 3}}')
    assert policy.budget(PLATFORM_API).per_minute == 3
    assert "platform_api" not in policy.service_budgets


def test_a_server_streaming_route_has_no_timeouts_and_counts_against_the_callers_budget(tmp_path: Path) -> None:
    config = render(load_mesh(), settings(tmp_path))
    by_path = {r["match"].get("path"): r for r in routes_of(config)}
    watch = by_path["/shopmesh.notification.v1.NotificationService/WatchNotifications"]
    assert watch["route"] == {"cluster": "notifications", "timeout": "0s", "idle_timeout": "0s"}
    # A user method: the stream needs a token, and opening it takes from the subject's budget.
    assert watch["typed_per_filter_config"]["envoy.filters.http.jwt_authn"]["requirement_name"] == "user"
    assert watch["metadata"]["filter_metadata"]["shopmesh.edge"]["rl_class"] == "user:notifications"
    # Unary methods keep their declared deadline.
    listing = by_path["/shopmesh.notification.v1.NotificationService/ListNotifications"]
    assert listing["route"]["timeout"] == "5s"
    assert "idle_timeout" not in listing["route"]
