"""Shared fixtures: platform configs built from an explicit environment."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from shopmesh_platform.config import PlatformConfig
from shopmesh_platform.mesh import DEFAULT_MESH_FILE

ConfigFactory = Callable[..., PlatformConfig]


@pytest.fixture
def mesh_document() -> dict[str, Any]:
    """The real mesh declaration as a dict, for tests that tweak a copy."""
    return yaml.safe_load(DEFAULT_MESH_FILE.read_text())


@pytest.fixture
def make_config(tmp_path: Path) -> ConfigFactory:
    """Build a PlatformConfig on free ports, optionally with a modified mesh."""

    def factory(service: str = "inventory", mesh: dict[str, Any] | None = None, **env: str) -> PlatformConfig:
        # Platform unit tests run plaintext; mutual TLS is tested against the real stack.
        values = {"SHOPMESH_GRPC_PORT": "0", "SHOPMESH_METRICS_PORT": "0", "MESH_TLS": "off", **env}
        if mesh is not None:
            mesh_file = tmp_path / "mesh.yaml"
            mesh_file.write_text(yaml.safe_dump(mesh))
            values["SHOPMESH_MESH_FILE"] = str(mesh_file)
        return PlatformConfig.from_env(service, values)

    return factory


def _run_order(item: pytest.Item) -> int:
    if item.get_closest_marker("restarts_stack") is not None:
        return 2
    return 1 if item.get_closest_marker("stops_components") is not None else 0


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that stop shared components run after the others, those restarting the whole stack last.

    So a component that does not come back breaks only the tests after it, and
    the tests relying on processes this run started (drain, exit codes) meet
    them before `make down`/`make up` replaced them. The sort is stable: each
    group keeps its file order.
    """
    items.sort(key=_run_order)
