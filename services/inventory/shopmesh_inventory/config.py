"""Settings of the inventory service, read once from the environment."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from shopmesh_platform.config import ConfigError, EnvReader
from shopmesh_platform.mesh import MeshDeclaration

GRACE_VARIABLE = "SHOPMESH_INVENTORY_ORPHAN_GRACE_SECONDS"


@dataclass(frozen=True)
class InventoryConfig:
    """SHOPMESH_INVENTORY_ORPHAN_GRACE_SECONDS: how long a reservation may wait for its
    order's OrderCreated before the reaper releases it (default 600: far longer than
    orders needs between reserving and storing). It must exceed CreateOrder's declared
    timeout (mesh.yaml): a CreateOrder gives up before that (the platform's deadline),
    so a reservation older than the grace can no longer be joined by its order, and
    releasing it cannot strand a real order. SHOPMESH_INVENTORY_REAPER_INTERVAL_SECONDS:
    how often the reaper looks (default 10)."""

    orphan_grace_seconds: float
    reaper_interval_seconds: float

    @classmethod
    def from_env(cls, env: Mapping[str, str], mesh: MeshDeclaration) -> InventoryConfig:
        read = EnvReader(env)
        grace = read.number(GRACE_VARIABLE, 600.0, minimum=1.0, maximum=7 * 24 * 3600)
        create_order = mesh.service("orders").methods["CreateOrder"]
        if grace <= create_order.timeout_seconds:
            raise ConfigError(
                f"{GRACE_VARIABLE}={grace:g} must exceed CreateOrder's timeout ({create_order.timeout_seconds:g} s in "
                "the mesh declaration): a shorter grace could release the stock of an order still being placed"
            )
        return cls(
            orphan_grace_seconds=grace,
            reaper_interval_seconds=read.number(
                "SHOPMESH_INVENTORY_REAPER_INTERVAL_SECONDS", 10.0, minimum=0.1, maximum=3600.0
            ),
        )
