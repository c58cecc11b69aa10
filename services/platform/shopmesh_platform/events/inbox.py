"""The inbox: an event's effect and the record that it happened, in one transaction.

A consumer hands each event to `Inbox.apply(consumer, event_id, effect)`. The
PostgreSQL inbox inserts `(consumer, event_id)` into `processed_events` and
runs the effect on the same connection, in the same transaction: both commit
or neither does. A redelivered event finds its row and the effect is skipped;
two deliveries racing each other meet on the primary key, and the second
waits for the first and then skips. A MongoDB inbox implements the same
interface with an insert on a unique `_id` (`<consumer>:<event_id>`).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Generic, Protocol, TypeVar

import asyncpg

Transaction_co = TypeVar("Transaction_co", covariant=True)


class Inbox(Protocol, Generic[Transaction_co]):
    async def apply(self, consumer: str, event_id: str, effect: Callable[[Transaction_co], Awaitable[None]]) -> bool:
        """Run `effect` once per (consumer, event id); False when it had already run."""
        ...


class PostgresInbox:
    """`processed_events` in the service's own database; the effect gets the transaction's connection."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def apply(
        self, consumer: str, event_id: str, effect: Callable[[asyncpg.Connection], Awaitable[None]]
    ) -> bool:
        async with self._pool.acquire() as connection, connection.transaction():
            first = await connection.fetchval(
                """INSERT INTO processed_events (consumer, event_id) VALUES ($1, $2)
                   ON CONFLICT DO NOTHING RETURNING true""",
                consumer,
                uuid.UUID(event_id),
            )
            if not first:
                return False
            await effect(connection)
            return True
