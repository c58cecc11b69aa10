"""Entry point: `python -m shopmesh_payments` (settings from the environment)."""

from __future__ import annotations

from collections.abc import Mapping

from shopmesh_payments.servicer import PaymentServicer, binding
from shopmesh_platform.runner import run_service
from shopmesh_platform.runtime import Runtime


async def serve(env: Mapping[str, str]) -> None:
    runtime = Runtime.from_env("payments", env)
    await runtime.postgres()  # health follows its database; its outbox is relayed
    await runtime.serve([binding(PaymentServicer())])


if __name__ == "__main__":
    run_service(serve)
