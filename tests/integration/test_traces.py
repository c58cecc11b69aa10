"""Traces across gRPC and Kafka on the real stack, read back from Jaeger's query API.

1. A registration through the edge, sent with a `traceparent`, is one trace: the
   users service's server span (the caller's span its parent), its PostgreSQL
   spans under it, the send of UserRegistered by its outbox relay, and below that
   the consuming span of a service built on the Runtime (tests/integration/
   trace_consumer.py, consuming user-events like the business consumers will)
   with its own PostgreSQL span.
2. A logout's SessionRevoked is consumed by the revocation feed of every other
   service: each one's consumer span is in the logout's trace, under its send.

The checkout trace of the issue (payments -> orders, inventory, notifications) is
tests/integration/test_checkout_trace.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from shopmesh_stack.settings import REPO
from shopmesh_stack.stack import Stack
from shopmesh_stack.traces import Span, Trace, fetch_trace, render_tree
from tests.integration.events_support import make_env
from tests.integration.helpers import http
from tests.integration.trace_consumer import GROUP_NAME
from tests.integration.users_client import PASSWORD, register, unique_email
from tests.polling import eventually

# Spans reach Jaeger in batches (the SDK's default is every 5 s); consumer groups join slowly under load.
TRACE_DEADLINE_SECONDS = 120
GROUP = f"inventory.{GROUP_NAME}"
# Every service but the issuer keeps a deny-list fed by SessionRevoked (a broadcast consumer).
FEEDING = ("orders", "payments", "inventory", "notifications")


def new_traceparent() -> tuple[str, str, str]:
    """(trace id, span id, header) of a sampled caller's span."""
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return trace_id, span_id, f"00-{trace_id}-{span_id}-01"


async def trace_where(stack: Stack, trace_id: str, complete: Callable[[Trace], bool]) -> Trace:
    """Poll Jaeger until the trace satisfies `complete` (the deadline failure shows the tree)."""

    async def probe() -> Trace | None:
        return await asyncio.to_thread(fetch_trace, stack.jaeger.query_url, trace_id)

    try:
        found = await eventually(
            probe, lambda t: t is not None and complete(t), timeout=TRACE_DEADLINE_SECONDS, interval=1
        )
    except AssertionError:
        last = await probe()
        raise AssertionError(f"trace {trace_id} incomplete:\n{render_tree(last) if last else 'no spans'}") from None
    assert found is not None
    return found


def server_span(found: Trace, service: str, method: str) -> Span | None:
    return next(
        (s for s in found.spans if s.service == service and s.kind == "server" and s.operation.endswith(method)), None
    )


def consumer_spans(found: Trace, group: str) -> list[Span]:
    return [
        s
        for s in found.spans
        if s.kind == "consumer"
        and s.operation == "user-events process"
        and s.tags.get("messaging.consumer.group.name") == group
    ]


@pytest.fixture
async def trace_consumer(stack: Stack, tmp_path: Path) -> AsyncIterator[None]:
    """The test consumer service, exporting to the stack's Jaeger; stopped with SIGTERM."""
    env = await make_env(stack.postgres.dsn("postgres"), stack.kafka.bootstrap, tmp_path)
    log = tmp_path / "trace-consumer.log"
    process_env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "SHOPMESH_DATABASE_URL": env.dsn,
        "SHOPMESH_KAFKA_BOOTSTRAP": stack.kafka.bootstrap,
        "SHOPMESH_GRPC_PORT": "0",
        "SHOPMESH_METRICS_PORT": "0",
        "MESH_TLS": "off",
        "SHOPMESH_ADDRESS_USERS": "127.0.0.1:1",  # its deny-list's JWKS is not needed here
        "OTEL_EXPORTER_OTLP_ENDPOINT": stack.jaeger.otlp_endpoint,
    }
    with log.open("w") as output:
        process = await asyncio.to_thread(
            subprocess.Popen,
            [sys.executable, "-m", "tests.integration.trace_consumer"],
            cwd=REPO,
            env=process_env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        try:
            yield
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(process.wait, 60)
            finally:
                if process.poll() is None:
                    process.kill()
                    process.wait(timeout=30)
    assert process.returncode == 0, log.read_text()[-3000:]


async def test_a_registration_and_the_event_it_causes_are_one_trace(stack: Stack, trace_consumer: None) -> None:
    trace_id, caller_span, traceparent = new_traceparent()
    body = {"email": unique_email("traced"), "password": PASSWORD, "firstName": "Ada", "lastName": "Lovelace"}
    reply = await asyncio.to_thread(
        http, stack, "POST", "/api/v1/users/register", json.dumps(body), {"traceparent": traceparent}
    )
    assert reply.status == 200, reply.body

    def complete(found: Trace) -> bool:
        server = server_span(found, "shopmesh-users", "/RegisterUser")
        return server is not None and any(found.descends_from(s, server) for s in consumer_spans(found, GROUP))

    found = await trace_where(stack, trace_id, complete)
    tree = render_tree(found)
    server = server_span(found, "shopmesh-users", "/RegisterUser")
    assert server is not None
    assert server.parent_id == caller_span, tree
    database = [s for s in found.spans if s.tags.get("db.system") == "postgresql"]
    assert any(s.service == "shopmesh-users" and found.descends_from(s, server) for s in database), tree
    [consumed] = consumer_spans(found, GROUP)
    assert consumed.service == "shopmesh-inventory"
    parent = found.by_id(consumed.parent_id or "")
    assert parent is not None and parent.kind == "producer" and parent.service == "shopmesh-users", tree
    assert found.descends_from(parent, server), tree
    assert any(s.service == "shopmesh-inventory" and found.descends_from(s, consumed) for s in database), tree


async def test_a_logout_trace_reaches_the_revocation_feed_of_every_service(stack: Stack) -> None:
    account = await asyncio.to_thread(register, stack)
    trace_id, _, traceparent = new_traceparent()
    headers = {**account.bearer, "traceparent": traceparent}
    reply = await asyncio.to_thread(http, stack, "POST", "/api/v1/users/logout", "{}", headers)
    assert reply.status == 200, reply.body

    def fed(found: Trace) -> set[str]:
        server = server_span(found, "shopmesh-users", "/Logout")
        if server is None:
            return set()
        return {
            s.service.removeprefix("shopmesh-")
            for s in found.spans
            if s.kind == "consumer" and s.operation == "user-events process" and found.descends_from(s, server)
        }

    found = await trace_where(stack, trace_id, lambda t: set(FEEDING) <= fed(t))
    assert set(FEEDING) <= fed(found), render_tree(found)
