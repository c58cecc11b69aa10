"""`make up` -> `make down` -> `make up` keeps the data; `make down` leaves nothing
of ours running. Drives the real command line against the test instance. A real
service drains on SIGTERM under concurrent calls."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import urllib.request
import uuid

import asyncpg
import grpc
import pytest
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from pymongo import AsyncMongoClient

from shopmesh.user.v1 import user_service_pb2 as user_pb
from shopmesh.user.v1 import user_service_pb2_grpc as user_grpc
from shopmesh_stack.channels import health_status
from shopmesh_stack.components import port_open
from shopmesh_stack.procs import _start_time
from shopmesh_stack.stack import Stack
from tests.integration.processes import session_members
from tests.integration.users_client import PASSWORD, unique_email
from tests.polling import eventually, wait_for


def cli(stack: Stack, command: str) -> subprocess.CompletedProcess[str]:
    settings = stack.settings
    env = {
        **os.environ,
        "SHOPMESH_DATA_DIR": str(settings.data_dir),
        "SHOPMESH_CACHE": str(settings.cache_dir),
        "SHOPMESH_EDGE_RATE_LIMITS": settings.edge_rate_limits,
        "SHOPMESH_EDGE_CORS_ORIGINS": settings.edge_cors_origins,
        "SHOPMESH_JWKS_REFRESH_SECONDS": f"{settings.jwks_refresh_seconds:g}",
        **settings.ports.variables(),
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

    # Each component leads a session of its own; its children (PostgreSQL's backends,
    # the Envoy behind its keeper) stay in it.
    sessions = {pid for pid in pids.values() if pid is not None}
    before = session_members(sessions)
    assert "envoy" in before.values() and len(before) > len(sessions), before

    down = cli(stack, "down")
    assert down.returncode == 0, down.stderr
    for name, pid in pids.items():
        assert pid is not None and _start_time(pid) is None, f"{name} (pid {pid}) still running after down"
    # Stopped processes may take a moment to be reaped by init, never to stay alive.
    wait_for(lambda: not session_members(sessions), 30, "no process of ours after down")
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


DRAIN_CALLS = 4


def rpc_counts(stack: Stack, service: str, method: str) -> tuple[float, float]:
    """(started, handled) calls of `method` from the service's Prometheus metrics."""
    url = f"http://127.0.0.1:{stack.settings.ports.metrics(service)}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        lines = response.read().decode().splitlines()
    selector = f'grpc_method="{method}"'

    def total(metric: str) -> float:
        return sum(float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith(metric) and selector in line)

    return total("grpc_server_started_total{"), total("grpc_server_handled_total{")


async def register_while_draining(stack: Stack, pid: int) -> tuple[list[user_pb.RegisterUserResponse], float]:
    """Start DRAIN_CALLS registrations, SIGTERM the users service while they run, and collect them.

    Returns the replies and how many calls were in flight when the signal was sent.
    """
    files = stack.settings.tls_files("developer")
    assert files is not None
    credentials = grpc.ssl_channel_credentials(
        root_certificates=files.ca.read_bytes(),
        private_key=files.key.read_bytes(),
        certificate_chain=files.cert.read_bytes(),
    )
    address = f"127.0.0.1:{stack.settings.ports.grpc('users')}"
    async with aio.secure_channel(address, credentials, options=[("grpc.ssl_target_name_override", "users")]) as chan:
        watch = health_pb2_grpc.HealthStub(chan).Watch(health_pb2.HealthCheckRequest(service=""))
        assert (await watch.read()).status == health_pb2.HealthCheckResponse.SERVING
        stub = user_grpc.UserServiceStub(chan)
        started_before, _ = await asyncio.to_thread(rpc_counts, stack, "users", "RegisterUser")
        calls = [
            asyncio.ensure_future(
                stub.RegisterUser(
                    user_pb.RegisterUserRequest(
                        email=unique_email("drain"), password=PASSWORD, first_name="Ada", last_name="Lovelace"
                    ),
                    timeout=60,
                )
            )
            for _ in range(DRAIN_CALLS)
        ]
        # Every call must have reached the service before the signal: later ones are rightly refused.
        started, handled = await eventually(
            lambda: asyncio.to_thread(rpc_counts, stack, "users", "RegisterUser"),
            lambda counts: counts[0] - started_before >= DRAIN_CALLS,
            timeout=30,
        )
        os.kill(pid, signal.SIGTERM)
        update = await asyncio.wait_for(watch.read(), timeout=10)
        assert update.status == health_pb2.HealthCheckResponse.NOT_SERVING
        watch.cancel()  # an open stream would hold the drain for the whole grace period
        replies = await asyncio.gather(*calls)
    return list(replies), started - handled


def exit_code(pid: int, timeout: float) -> int:
    """Reap our child `pid` within `timeout` seconds and return its exit code."""
    statuses: list[int] = []

    def exited() -> bool:
        reaped, status = os.waitpid(pid, os.WNOHANG)
        if reaped == pid:
            statuses.append(status)
        return bool(statuses)

    wait_for(exited, timeout, f"pid {pid} exiting")
    return os.waitstatus_to_exitcode(statuses[0])


@pytest.mark.stops_components
def test_sigterm_drains_a_real_service_under_concurrent_calls(stack: Stack) -> None:
    users = stack.services["users"]
    pid = users.process.pid()
    assert pid is not None
    try:
        replies, in_flight = asyncio.run(register_while_draining(stack, pid))
        assert in_flight >= 1, "no call was in flight when SIGTERM was sent"
        # Every call in flight at SIGTERM completed normally...
        assert len({reply.user.id for reply in replies}) == DRAIN_CALLS
        assert all(reply.token for reply in replies)
        # ...and the service then exited cleanly.
        assert exit_code(pid, 60) == 0
        assert "draining" in users.process.tail(200)
    finally:
        stack.start(users)  # the session stack stays whole
    assert health_status(stack.settings, "users") == health_pb2.HealthCheckResponse.SERVING
