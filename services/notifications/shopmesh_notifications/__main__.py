"""Entry point: `python -m shopmesh_notifications` (settings from the environment)."""

from __future__ import annotations

from collections.abc import Mapping

from shopmesh_notifications.servicer import NotificationServicer, binding
from shopmesh_platform.runner import run_service, serve_with_postgres


async def serve(env: Mapping[str, str]) -> None:
    await serve_with_postgres("notifications", env, lambda runtime, pool: [binding(NotificationServicer())])


if __name__ == "__main__":
    run_service(serve)
