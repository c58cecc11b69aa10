"""`make up` -> `make down` -> `make up` keeps the data; `make down` leaves nothing
of ours running. Drives the real command line against the test instance."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from dataclasses import fields

import asyncpg
import pytest
from pymongo import AsyncMongoClient

from shopmesh_stack.components import port_open
from shopmesh_stack.procs import _start_time
from shopmesh_stack.stack import Stack


def cli(stack: Stack, command: str) -> subprocess.CompletedProcess[str]:
    settings = stack.settings
    env = {
        **os.environ,
        "SHOPMESH_DATA_DIR": str(settings.data_dir),
        "SHOPMESH_CACHE": str(settings.cache_dir),
        "SHOPMESH_EDGE_RATE_LIMITS": settings.edge_rate_limits,
        "SHOPMESH_EDGE_CORS_ORIGINS": settings.edge_cors_origins,
        "SHOPMESH_JWKS_REFRESH_SECONDS": f"{settings.jwks_refresh_seconds:g}",
        **{f"SHOPMESH_PORT_{f.name.upper()}": str(getattr(settings.ports, f.name)) for f in fields(settings.ports)},
    }
    return subprocess.run(
        [sys.executable, "-m", "shopmesh_stack", command],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


async def write_marker(stack: Stack, marker: str) -> None:
    connection = await asyncpg.connect(stack.postgres.dsn("users"))
    try:
        await connection.execute("CREATE TABLE IF NOT EXISTS lifecycle_marker (value text)")
        await connection.execute("INSERT INTO lifecycle_marker VALUES ($1)", marker)
    finally:
        await connection.close()
    client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(stack.ferretdb.url)
    try:
        await client["orders"]["lifecycle"].insert_one({"_id": marker})
    finally:
        await client.close()


async def read_marker(stack: Stack, marker: str) -> tuple[bool, bool]:
    connection = await asyncpg.connect(stack.postgres.dsn("users"))
    try:
        in_postgres = await connection.fetchval("SELECT count(*) FROM lifecycle_marker WHERE value = $1", marker) == 1
    finally:
        await connection.close()
    client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(stack.ferretdb.url)
    try:
        in_mongo = await client["orders"]["lifecycle"].find_one({"_id": marker}) is not None
    finally:
        await client.close()
    return in_postgres, in_mongo


@pytest.mark.restarts_stack
def test_down_stops_everything_and_up_keeps_the_data(stack: Stack) -> None:
    marker = str(uuid.uuid4())
    asyncio.run(write_marker(stack, marker))
    pids = {row.name: row.pid for row in stack.status()}
    assert all(pids.values()), pids

    down = cli(stack, "down")
    assert down.returncode == 0, down.stderr
    for name, pid in pids.items():
        assert pid is not None and _start_time(pid) is None, f"{name} (pid {pid}) still running after down"
    for row in stack.status():
        assert not row.running
        assert not port_open(row.port), f"{row.name} port {row.port} still open"

    up = cli(stack, "up")
    assert up.returncode == 0, up.stdout + up.stderr
    assert "shopmesh is up" in up.stdout
    assert all(row.running for row in stack.status())
    assert asyncio.run(read_marker(stack, marker)) == (True, True)

    status = cli(stack, "status")
    assert status.returncode == 0
    assert status.stdout.count(" up ") == len(stack.components)
