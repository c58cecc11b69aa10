"""The OpenAPI document against what the edge really routes.

The routes come from Envoy's running configuration (`/config_dump`), not from the
descriptor that produced the document; each documented operation is then sent to
the edge and the access log says which route served it. Every documented path and
method has a route (the one of its gRPC method), every contract route is documented,
and bearer auth is documented exactly where the route demands a token.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from shopmesh_platform.mesh import load_mesh
from shopmesh_render.routes import rest_routes
from shopmesh_stack.settings import REPO
from shopmesh_stack.stack import Stack
from tests.integration.edge_admin import config_dump, edge_admin_address
from tests.integration.helpers import http

DOCUMENT = REPO / "gen" / "openapi" / "openapi.json"
JWT_FILTER = "envoy.filters.http.jwt_authn"
GRPC_METHOD_PATH = re.compile(r"^/(?P<package>[a-z0-9_.]+)\.(?P<service>[A-Za-z0-9]+)/(?P<method>[A-Za-z0-9]+)$")
HTTP_METHODS = ("get", "put", "post", "delete", "patch")
PLACEHOLDER = re.compile(r"\{([^}]+)\}")


@dataclass(frozen=True)
class EdgeRoute:
    name: str
    grpc_path: str
    needs_token: bool

    @property
    def operation_id(self) -> str:
        # protoc-gen-openapi's naming: <Service>_<Method>.
        match = GRPC_METHOD_PATH.match(self.grpc_path)
        assert match, self.grpc_path
        return f"{match['service']}_{match['method']}"


def edge_routes(stack: Stack) -> tuple[dict[str, EdgeRoute], list[dict[str, Any]]]:
    """Contract routes of the running edge by gRPC path, and every other route."""
    configs = config_dump(edge_admin_address(stack), "static_route_configs")
    # The edge listener's routes ("edge"); the metrics listener's are not the API.
    routes = [
        route
        for config in configs
        if config["route_config"]["name"] == "edge"
        for host in config["route_config"]["virtual_hosts"]
        for route in host.get("routes", [])
    ]
    contract: dict[str, EdgeRoute] = {}
    others: list[dict[str, Any]] = []
    for route in routes:
        path = route["match"].get("path", "")
        if "route" in route and GRPC_METHOD_PATH.match(path):
            per_filter = route.get("typed_per_filter_config", {}).get(JWT_FILTER, {})
            contract[path] = EdgeRoute(route["name"], path, bool(per_filter.get("requirement_name")))
        else:
            others.append(route)
    return contract, others


def documented_operations() -> list[tuple[str, str, dict[str, Any]]]:
    document = json.loads(DOCUMENT.read_text())
    return [
        (method, path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in HTTP_METHODS
    ]


def is_platform_route(route: dict[str, Any]) -> bool:
    """Routes that are not contract methods: edge answers, health/reflection, CORS preflights."""
    match = route["match"]
    return (
        "direct_response" in route
        or match.get("prefix", "").startswith(("/grpc.health.v1.Health/", "/grpc.reflection."))
        or any(
            h.get("name") == ":method" and h.get("string_match", {}).get("exact") == "OPTIONS"
            for h in match.get("headers", [])
        )
    )


def concrete(path: str) -> str:
    """A request path for a documented template: ids that pass the contracts' format rules."""

    def value(match: re.Match[str]) -> str:
        return "prod-openapi" if match[1].lower().startswith("product") else str(uuid.uuid4())

    return PLACEHOLDER.sub(value, path)


def log_size(access_log: Path) -> int:
    return access_log.stat().st_size if access_log.exists() else 0


def served_route(access_log: Path, marker: str, offset: int = 0, deadline_seconds: float = 20.0) -> dict[str, Any]:
    """The access log entry of the request whose user agent is `marker` (Envoy flushes it within a second).

    Only what was written after `offset` is read: the session's log grows large.
    """
    deadline = time.monotonic() + deadline_seconds
    while time.monotonic() < deadline:
        if access_log.exists():
            with access_log.open("rb") as log:
                log.seek(offset)
                for raw in log.read().splitlines():
                    line = raw.decode(errors="replace")
                    if marker in line:
                        entry: dict[str, Any] = json.loads(line)
                        if entry.get("user_agent") == marker:
                            return entry
        time.sleep(0.2)
    raise AssertionError(f"no access log entry for {marker} within {deadline_seconds}s")


def test_edge_serves_the_generated_document(stack: Stack) -> None:
    reply = http(stack, "GET", "/api/v1/openapi.json")
    assert reply.status == 200
    assert reply.headers["content-type"] == "application/json"
    assert reply.json() == json.loads(DOCUMENT.read_text())
    assert reply.json()["openapi"].startswith("3.")


def test_every_route_is_documented_and_every_operation_routed(stack: Stack) -> None:
    routes, others = edge_routes(stack)
    assert routes, "the edge has no contract routes"
    unexplained = [route["name"] for route in others if not is_platform_route(route)]
    assert unexplained == [], f"routes that are neither contract methods nor platform routes: {unexplained}"

    operations = documented_operations()
    # Methods without an HTTP binding (the server-streaming WatchNotifications) are gRPC-only routes.
    rest_paths = {rest.method.path for rest in rest_routes(load_mesh())}
    by_operation_id = {route.operation_id: route for path, route in routes.items() if path in rest_paths}
    documented_ids = [operation["operationId"] for _, _, operation in operations]
    assert sorted(documented_ids) == sorted(by_operation_id), "documented operations differ from the edge's routes"

    for method, path, operation in operations:
        route = by_operation_id[operation["operationId"]]
        documents_bearer = {"bearerAuth": []} in operation.get("security", [])
        assert documents_bearer == route.needs_token, f"{method.upper()} {path}: bearer documented wrongly"


@pytest.mark.timeout(300)
def test_each_documented_path_reaches_its_route(stack: Stack) -> None:
    routes, _ = edge_routes(stack)
    by_operation_id = {route.operation_id: route for route in routes.values()}
    access_log = stack.settings.log_dir / "envoy-access.log"
    for method, path, operation in documented_operations():
        route = by_operation_id[operation["operationId"]]
        marker = f"openapi-probe-{uuid.uuid4().hex}"
        body = None if method == "get" else "{}"
        offset = log_size(access_log)
        reply = http(stack, method.upper(), concrete(path), body, {"User-Agent": marker})
        entry = served_route(access_log, marker, offset)
        where = f"{method.upper()} {path} -> {reply.status}"
        assert entry["route"] == route.name, where
        assert entry["grpc_path"] == route.grpc_path, where
        if route.needs_token:
            assert reply.status == 401, where
