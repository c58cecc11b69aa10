"""Entry point: `python -m shopmesh_orders` (settings from the environment)."""

from __future__ import annotations

from collections.abc import Mapping

from shopmesh_orders.servicer import OrderServicer, binding
from shopmesh_platform.config import PlatformConfig
from shopmesh_platform.logs import configure_logging
from shopmesh_platform.mongo import MongoConfig, MongoReadiness, create_client
from shopmesh_platform.runner import run_service
from shopmesh_platform.server import create_server


async def serve(env: Mapping[str, str]) -> None:
    config = PlatformConfig.from_env("orders", env)
    database = MongoConfig.from_env(env)
    configure_logging("orders", config.log_level)
    client = create_client(database)
    try:
        server = create_server(config, [binding(OrderServicer())], readiness=MongoReadiness(client))
        await server.serve()
    finally:
        await client.close()


if __name__ == "__main__":
    run_service(serve)
