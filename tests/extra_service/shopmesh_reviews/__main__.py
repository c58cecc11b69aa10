"""`python -m shopmesh_reviews`: the extra service of test_extra_service, on the Runtime.

Everything it runs with comes from its mesh declaration entry, through the
runtime: its PostgreSQL database (`storage`), the topics its consumer reads
(`consumes`) and the outbox relay (started because it `publishes`). Its one
effect: each `UserRegistered` it consumes from its own topics (not the
revocation topic, which every service consumes for its deny-list) becomes a row of `reviewed_events`
(no unique key, so an event applied twice would show). It has no migrations
directory of its own (the stack gives it the platform's tables), so it creates
that table itself before it serves.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping

import asyncpg

from shopmesh.user.v1 import events_pb2 as user_events
from shopmesh_platform.events.consumer import EventContext, Handlers
from shopmesh_platform.runner import run_service
from shopmesh_platform.runtime import Runtime

SERVICE = "reviews"
REVIEWED_EVENTS_SQL = """CREATE TABLE IF NOT EXISTS reviewed_events (
    id       bigserial PRIMARY KEY,
    event_id uuid NOT NULL,
    subject  text NOT NULL
)"""


async def record(event: user_events.UserRegistered, context: EventContext[asyncpg.Connection]) -> None:
    await context.transaction.execute(
        "INSERT INTO reviewed_events (event_id, subject) VALUES ($1, $2)", uuid.UUID(context.event_id), event.user_id
    )


async def serve(env: Mapping[str, str]) -> None:
    runtime = Runtime.from_env(SERVICE, env)
    store = await runtime.postgres()
    async with store.pool.acquire() as connection:
        await connection.execute(REVIEWED_EVENTS_SQL)
    handlers: Handlers[asyncpg.Connection] = Handlers()
    handlers.register(user_events.UserRegistered, record)
    # Every topic it declares consuming but the revocation topic (the runtime's deny-list reads that one).
    auth = runtime.config.mesh.auth
    topics = sorted(runtime.declaration.consumes - ({auth.revocation_topic} if auth is not None else set()))
    await runtime.serve([], consumers=[runtime.consumer("reviewed", handlers, topics=topics)])  # health, reflection


if __name__ == "__main__":
    run_service(serve)
