"""Settings of the inventory service, read once from the environment."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from shopmesh_platform.config import EnvReader


@dataclass(frozen=True)
class InventoryConfig:
    """SHOPMESH_INVENTORY_ORPHAN_GRACE_SECONDS: how long a reservation may wait for its
    order's OrderCreated before the reaper releases it (default 600: far longer than
    orders needs between reserving and storing). SHOPMESH_INVENTORY_REAPER_INTERVAL_SECONDS:
    how often the reaper looks (default 10)."""

    orphan_grace_seconds: float
    reaper_interval_seconds: float

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> InventoryConfig:
        read = EnvReader(env)
        return cls(
            orphan_grace_seconds=read.number(
                "SHOPMESH_INVENTORY_ORPHAN_GRACE_SECONDS", 600.0, minimum=1.0, maximum=7 * 24 * 3600
            ),
            reaper_interval_seconds=read.number(
                "SHOPMESH_INVENTORY_REAPER_INTERVAL_SECONDS", 10.0, minimum=0.1, maximum=3600.0
            ),
        )
