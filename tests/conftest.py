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


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that stop and restart the whole stack run last."""
    items.sort(key=lambda item: item.get_closest_marker("restarts_stack") is not None)
