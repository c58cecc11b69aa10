"""The edge's JWKS cache lasts the instance's refresh period, so a retired key is
refused at the edge within it (the services use the same setting)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from shopmesh_edge.policy import load_edge_policy
from shopmesh_edge.render import EdgeSettings, render_yaml
from shopmesh_platform.mesh import load_mesh
from shopmesh_stack.settings import StackSettings


def jwt_providers(config: dict[str, Any]) -> dict[str, Any]:
    for listener in config["static_resources"]["listeners"]:
        for chain in listener["filter_chains"]:
            for network_filter in chain["filters"]:
                for http_filter in network_filter["typed_config"].get("http_filters", []):
                    if http_filter["name"] == "envoy.filters.http.jwt_authn":
                        return dict(http_filter["typed_config"]["providers"])
    raise AssertionError("no jwt_authn filter rendered")


def test_the_jwks_cache_duration_is_the_refresh_period(tmp_path: Path) -> None:
    settings = EdgeSettings(
        listen_port=18080,
        admin_port=19901,
        upstream_ports={name: 50051 for name in load_mesh().services},
        descriptor=tmp_path / "shopmesh.binpb",
        access_log=tmp_path / "access.log",
        policy=load_edge_policy(),
        jwks_cache_seconds=2.5,
    )
    providers = jwt_providers(yaml.safe_load(render_yaml(load_mesh(), settings)))
    assert [p["remote_jwks"]["cache_duration"] for p in providers.values()] == ["2.5s"]


def test_the_stack_reads_one_refresh_period_for_edge_and_services() -> None:
    assert StackSettings.from_env({"SHOPMESH_JWKS_REFRESH_SECONDS": "7"}).jwks_refresh_seconds == 7.0
    assert StackSettings.from_env({}).jwks_refresh_seconds == 300.0
