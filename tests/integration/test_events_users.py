"""The users service on the platform relay: an outbox row it cannot publish is
parked and counted, and the events behind it (SessionRevoked) still go out;
operators see and unpark parked rows with `make dlq`."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import urllib.request
import uuid

import asyncpg

from shopmesh.user.v1 import events_pb2 as user_events
from shopmesh_platform.events.outbox import append_event
from shopmesh_stack.settings import REPO
from shopmesh_stack.stack import Stack
from tests.integration.test_user_events import find_event
from tests.integration.users_client import call, register
from tests.polling import eventually

SESSION_REVOKED = "shopmesh.user.v1.SessionRevoked"


def users_metric(stack: Stack, name: str) -> float:
    port = stack.settings.ports.metrics("users")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(f"{name} "):
                return float(line.split()[1])
    raise AssertionError(f"metric {name} not exposed")


async def parked_row(stack: Stack, event_id: str) -> asyncpg.Record | None:
    connection = await asyncpg.connect(stack.postgres.dsn("users"))
    try:
        return await connection.fetchrow(
            "SELECT attempts, last_error, parked_at, published_at FROM outbox WHERE event_id = $1", uuid.UUID(event_id)
        )
    finally:
        await connection.close()


def dlq_command(stack: Stack, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "shopmesh_stack", "dlq", *args],
        cwd=REPO,
        env={"PATH": "/usr/bin:/bin", "SHOPMESH_PORT_POSTGRES": str(stack.settings.ports.postgres)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


async def test_an_undeclared_topic_row_is_parked_and_session_revoked_still_arrives(stack: Stack) -> None:
    parked_before = users_metric(stack, "outbox_parked_total")
    connection = await asyncpg.connect(stack.postgres.dsn("users"))
    try:
        async with connection.transaction():
            bad_id = await append_event(
                connection, "no-such-topic", str(uuid.uuid4()), user_events.UserSuspended(reason="test")
            )
    finally:
        await connection.close()
    account = await asyncio.to_thread(register, stack)
    reply = await asyncio.to_thread(call, stack, "POST", "/api/v1/users/logout", account, {})
    assert reply.status == 200

    value, _ = await find_event(stack, account.id, SESSION_REVOKED, timeout=60)
    assert user_events.SessionRevoked.FromString(value).user_id == account.id
    row = await eventually(lambda: parked_row(stack, bad_id), lambda r: r is not None and r["parked_at"], timeout=30)
    assert row is not None and row["published_at"] is None and "not declared" in row["last_error"]
    assert await eventually(
        lambda: asyncio.to_thread(users_metric, stack, "outbox_parked_total"),
        lambda n: n >= parked_before + 1,
        timeout=30,
    )

    listing = await asyncio.to_thread(dlq_command, stack, "parked", "users")
    assert f"event-id={bad_id}" in listing and "topic=no-such-topic" in listing
    unparked = await asyncio.to_thread(dlq_command, stack, "unpark", "users")
    assert "row(s) unparked" in unparked and not unparked.startswith("users: 0 ")
    # Still undeclared: the relay parks it again rather than blocking on it.
    await eventually(
        lambda: parked_row(stack, bad_id), lambda r: r is not None and r["attempts"] >= 1 and r["parked_at"], timeout=30
    )
