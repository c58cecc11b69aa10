"""Entry point: `python -m shopmesh_payments` (settings from the environment)."""

from __future__ import annotations

from collections.abc import Mapping

from shopmesh_payments.servicer import PaymentServicer, binding
from shopmesh_platform.runner import run_service, serve_with_postgres


async def serve(env: Mapping[str, str]) -> None:
    await serve_with_postgres("payments", env, lambda runtime, pool: [binding(PaymentServicer())])


if __name__ == "__main__":
    run_service(serve)
