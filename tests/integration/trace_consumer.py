"""A service on the Runtime with a business-like consumer of `user-events`, for the trace test:
`python -m tests.integration.trace_consumer`.

It is the inventory service of the real mesh (which consumes user-events) with
one consumer, group `inventory.trace-test`, whose effect on UserRegistered is a
row in its own database's `effects` table (so the event's trace shows the
consumer's span and a database span under it). It exports traces to
OTEL_EXPORTER_OTLP_ENDPOINT like any service of the stack. The real
consumers (orders, inventory, notifications) are traced in test_checkout_trace.py.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping

import asyncpg

from shopmesh.user.v1 import events_pb2 as user_events
from shopmesh_platform.events.consumer import EventContext, Handlers
from shopmesh_platform.runner import run_service
from shopmesh_platform.runtime import Runtime

GROUP_NAME = "trace-test"


async def record_registration(event: user_events.UserRegistered, context: EventContext[asyncpg.Connection]) -> None:
    await context.transaction.execute(
        "INSERT INTO effects (event_id, aggregate_id, seq) VALUES ($1, $2, 0)",
        uuid.UUID(context.event_id),
        event.user_id,
    )


async def serve(env: Mapping[str, str]) -> None:
    runtime = Runtime.from_env("inventory", env)
    await runtime.postgres()
    handlers: Handlers[asyncpg.Connection] = Handlers()
    handlers.register(user_events.UserRegistered, record_registration)
    consumer = runtime.consumer(GROUP_NAME, handlers, topics=["user-events"])
    await runtime.serve([], consumers=[consumer])  # health and reflection only


if __name__ == "__main__":
    run_service(serve)
