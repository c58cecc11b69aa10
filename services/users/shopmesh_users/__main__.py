"""Entry point: `python -m shopmesh_users` (settings from the environment)."""

from __future__ import annotations

from collections.abc import Mapping

from shopmesh_platform.runner import run_service, serve_with_postgres
from shopmesh_users.servicer import UserServicer, binding


async def serve(env: Mapping[str, str]) -> None:
    await serve_with_postgres("users", env, lambda pool: [binding(UserServicer())])


if __name__ == "__main__":
    run_service(serve)
