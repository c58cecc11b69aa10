"""Inventory's settings: the orphan grace must outlast a CreateOrder."""

from __future__ import annotations

import pytest

from shopmesh_inventory.config import InventoryConfig
from shopmesh_platform.config import ConfigError
from shopmesh_platform.mesh import load_mesh


def test_the_default_grace_is_ten_minutes() -> None:
    config = InventoryConfig.from_env({}, load_mesh())
    assert (config.orphan_grace_seconds, config.reaper_interval_seconds) == (600.0, 10.0)


@pytest.mark.parametrize("grace", ["1", "10"])
def test_a_grace_within_create_orders_timeout_is_refused(grace: str) -> None:
    mesh = load_mesh()
    assert mesh.service("orders").methods["CreateOrder"].timeout_seconds == 10
    with pytest.raises(ConfigError, match=r"SHOPMESH_INVENTORY_ORPHAN_GRACE_SECONDS=.* must exceed CreateOrder's"):
        InventoryConfig.from_env({"SHOPMESH_INVENTORY_ORPHAN_GRACE_SECONDS": grace}, mesh)


def test_a_grace_past_create_orders_timeout_is_taken() -> None:
    config = InventoryConfig.from_env({"SHOPMESH_INVENTORY_ORPHAN_GRACE_SECONDS": "10.5"}, load_mesh())
    assert config.orphan_grace_seconds == 10.5
