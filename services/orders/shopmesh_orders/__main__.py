"""Entry point: `python -m shopmesh_orders` (settings from the environment)."""

from __future__ import annotations

from collections.abc import Mapping

from shopmesh_orders.servicer import OrderServicer, binding
from shopmesh_platform.mongo import MongoConfig, MongoReadiness, create_client
from shopmesh_platform.runner import ServiceRuntime, run_service


async def serve(env: Mapping[str, str]) -> None:
    runtime = ServiceRuntime("orders", env)
    database = MongoConfig.from_env(env)
    client = create_client(database)
    try:
        await runtime.serve([binding(OrderServicer())], MongoReadiness(client), runtime.verifier())
    finally:
        await client.close()


if __name__ == "__main__":
    run_service(serve)
