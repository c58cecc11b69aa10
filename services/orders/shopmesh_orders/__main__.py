"""Entry point: `python -m shopmesh_orders` (settings from the environment)."""

from __future__ import annotations

from collections.abc import Mapping

from shopmesh_orders.servicer import OrderServicer, binding
from shopmesh_platform.runner import run_service
from shopmesh_platform.runtime import Runtime


async def serve(env: Mapping[str, str]) -> None:
    runtime = Runtime.from_env("orders", env)
    runtime.mongo()  # health follows its database
    await runtime.serve([binding(OrderServicer())])


if __name__ == "__main__":
    run_service(serve)
