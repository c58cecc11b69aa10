"""The transactional outbox: the store interface a relay reads, and PostgreSQL's.

A state change and its event commit together: `append_event` writes the event
on the caller's connection inside the caller's transaction. A relay then
takes the service's lease (`OutboxStore.lease`) and, through the session it
gets, reads pending events in publish order, marks them published after the
broker acknowledged them, and records failures (parking a row after its last
attempt).

The interface asks nothing a store cannot do by inserting: a MongoDB store
(FerretDB rewrites documents on update, so guarantees must rest on inserts)
implements it with marker documents on unique ids, e.g. `<event_id>:published`,
`<event_id>:attempt:<n>`, `<event_id>:parked`, and a lease document per term.

PostgreSQL: the `outbox` table (migrations/platform). Per-aggregate order holds
because `append_event` takes a transaction-scoped advisory lock on the
aggregate before inserting: a second transaction writing the same aggregate
waits until the first committed or rolled back, so one aggregate's ids are in
commit order (not just insert order) and the relay publishes by id. The lease
is a session advisory lock on a connection kept open by the relay; when that
process dies the connection closes and the lock is free (TCP keepalives bound
how long a vanished host can hold it). The lease's connection also LISTENs on
`outbox`, which a trigger NOTIFYs at the commit of every insert (migration
0003): the relay waits for that or its poll interval (`wait_for_events`).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import uuid
import zlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import asyncpg
from google.protobuf.message import Message

from shopmesh_platform.events.doorbell import Doorbell
from shopmesh_platform.events.envelope import EventEnvelope, current_traceparent, encode, new_event_id

# Advisory lock namespace (first key of the two-int form) for relay leases.
_LEASE_LOCK_CLASS = 0x0B0C
ERROR_TEXT_LIMIT = 500
# The channel migration 0003's trigger notifies when outbox rows commit.
NOTIFY_CHANNEL = "outbox"


@dataclass(frozen=True)
class OutboxEvent:
    """One stored event as a relay sees it. `position` is the store's ordering handle."""

    position: int
    event_id: str
    topic: str
    aggregate_id: str
    event_type: str
    payload: bytes
    traceparent: str | None
    attempts: int

    def envelope(self) -> EventEnvelope:
        return encode(
            self.topic,
            self.aggregate_id,
            event_id=self.event_id,
            event_type=self.event_type,
            payload=self.payload,
            traceparent=self.traceparent,
        )


@dataclass(frozen=True)
class ParkedEvent:
    """A row the relay gave up on, for operators (no payload: it may hold personal data)."""

    position: int
    event_id: str
    topic: str
    aggregate_id: str
    event_type: str
    attempts: int
    last_error: str | None
    parked_at: dt.datetime


@dataclass(frozen=True)
class OutboxCounts:
    pending: int
    parked: int


class OutboxSession(Protocol):
    """What the lease holder may do. Every method is idempotent under a crash and rerun."""

    async def pending(self, limit: int) -> Sequence[OutboxEvent]:
        """Up to `limit` events neither published nor parked, in publish order."""
        ...

    async def mark_published(self, events: Sequence[OutboxEvent]) -> None: ...

    async def record_failure(self, event: OutboxEvent, error: str, *, park: bool) -> None:
        """Count one failed attempt; with `park`, stop offering the event to the relay."""
        ...

    async def counts(self) -> OutboxCounts: ...

    async def wait_for_events(self, timeout: float) -> None:
        """Return when new events may have committed, or after `timeout` seconds at the latest."""
        ...


class OutboxStore(Protocol):
    """A service's outbox."""

    def lease(self, holder: str) -> contextlib.AbstractAsyncContextManager[OutboxSession]:
        """Wait until `holder` is the only relay of the service; the lease ends with the context."""
        ...

    async def parked(self, limit: int = 100) -> Sequence[ParkedEvent]: ...

    async def unpark(self, positions: Sequence[int] | None = None) -> int:
        """Offer parked events (all when `positions` is None) to the relay again; returns how many."""
        ...


def _fill_event_metadata(event: Message) -> str:
    """Set `event_id` and `occurred_at` when the message has them and they are empty; returns the id."""
    fields = event.DESCRIPTOR.fields_by_name
    event_id = new_event_id()
    if "event_id" in fields:
        if not event.event_id:  # type: ignore[attr-defined]
            event.event_id = event_id  # type: ignore[attr-defined]
        event_id = str(event.event_id)  # type: ignore[attr-defined]
    if "occurred_at" in fields and not event.HasField("occurred_at"):
        event.occurred_at.GetCurrentTime()  # type: ignore[attr-defined]
    return event_id


async def append_event(connection: asyncpg.Connection, topic: str, aggregate_id: str, event: Message) -> str:
    """Write `event` to the outbox in the caller's transaction; returns its event id.

    Takes the aggregate's transaction lock first (held until commit or rollback),
    so concurrent transactions on one aggregate append in commit order.
    """
    if not connection.is_in_transaction():
        raise RuntimeError("append_event must run inside the transaction of the state change")
    event_id = _fill_event_metadata(event)
    await connection.execute("SELECT pg_advisory_xact_lock(hashtextextended('outbox:' || $1, 0))", aggregate_id)
    await connection.execute(
        """INSERT INTO outbox (event_id, topic, aggregate_id, event_type, payload, traceparent)
           VALUES ($1, $2, $3, $4, $5, $6)""",
        uuid.UUID(event_id),
        topic,
        aggregate_id,
        event.DESCRIPTOR.full_name,
        event.SerializeToString(),
        current_traceparent(),
    )
    return event_id


def lease_lock_key(service: str) -> int:
    """The second key of the service's lease lock (a signed int4, as PostgreSQL wants)."""
    key = zlib.crc32(f"outbox:{service}".encode())
    return key - 2**32 if key >= 2**31 else key


def _event(row: asyncpg.Record) -> OutboxEvent:
    return OutboxEvent(
        position=row["id"],
        event_id=str(row["event_id"]),
        topic=row["topic"],
        aggregate_id=row["aggregate_id"],
        event_type=row["event_type"],
        payload=bytes(row["payload"]),
        traceparent=row["traceparent"],
        attempts=row["attempts"],
    )


class PostgresOutboxSession:
    """The lease holder's view of the `outbox` table, on the lease's own connection."""

    def __init__(self, connection: asyncpg.Connection, doorbell: Doorbell) -> None:
        self._connection = connection
        self._doorbell = doorbell

    async def pending(self, limit: int) -> Sequence[OutboxEvent]:
        rows = await self._connection.fetch(
            """SELECT id, event_id, topic, aggregate_id, event_type, payload, traceparent, attempts
               FROM outbox WHERE published_at IS NULL AND parked_at IS NULL ORDER BY id LIMIT $1""",
            limit,
        )
        return [_event(row) for row in rows]

    async def mark_published(self, events: Sequence[OutboxEvent]) -> None:
        if events:
            await self._connection.execute(
                "UPDATE outbox SET published_at = now() WHERE id = ANY($1::bigint[])", [e.position for e in events]
            )

    async def record_failure(self, event: OutboxEvent, error: str, *, park: bool) -> None:
        await self._connection.execute(
            """UPDATE outbox SET attempts = attempts + 1, last_error = $2,
                                 parked_at = CASE WHEN $3 THEN now() END
               WHERE id = $1""",
            event.position,
            error[:ERROR_TEXT_LIMIT],
            park,
        )

    async def counts(self) -> OutboxCounts:
        row = await self._connection.fetchrow(
            """SELECT count(*) FILTER (WHERE parked_at IS NULL) AS pending,
                      count(*) FILTER (WHERE parked_at IS NOT NULL) AS parked
               FROM outbox WHERE published_at IS NULL"""
        )
        return OutboxCounts(pending=row["pending"], parked=row["parked"])

    async def wait_for_events(self, timeout: float) -> None:
        await self._doorbell.wait(timeout)


class PostgresOutboxStore:
    """The `outbox` table of one service's database."""

    def __init__(
        self,
        dsn: str,
        service: str,
        *,
        standby_interval: float = 1.0,
        keepalive_seconds: int = 5,
        connect_timeout: float = 5.0,
    ) -> None:
        self._dsn = dsn
        self._service = service
        self._standby_interval = standby_interval
        self._keepalive_seconds = keepalive_seconds
        self._connect_timeout = connect_timeout

    async def _connect(self, application_name: str) -> asyncpg.Connection:
        keepalive = str(self._keepalive_seconds)
        return await asyncpg.connect(
            self._dsn,
            timeout=self._connect_timeout,
            server_settings={
                "application_name": application_name[:63],
                # A lease holder whose host vanished loses the lock within ~3 keepalive periods.
                "tcp_keepalives_idle": keepalive,
                "tcp_keepalives_interval": keepalive,
                "tcp_keepalives_count": "2",
            },
        )

    @contextlib.asynccontextmanager
    async def lease(self, holder: str) -> AsyncIterator[OutboxSession]:
        connection = await self._connect(holder)
        try:
            key = lease_lock_key(self._service)
            while True:  # standby: poll until the current holder's session ends
                if await connection.fetchval("SELECT pg_try_advisory_lock($1, $2)", _LEASE_LOCK_CLASS, key):
                    break
                await asyncio.sleep(self._standby_interval)
            doorbell = Doorbell()
            await connection.add_listener(NOTIFY_CHANNEL, lambda *_: doorbell.ring())
            yield PostgresOutboxSession(connection, doorbell)
        finally:
            # Closing the session releases the lock; a broken connection is just dropped.
            try:
                await asyncio.wait_for(connection.close(), timeout=2)
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
                connection.terminate()

    async def parked(self, limit: int = 100) -> Sequence[ParkedEvent]:
        connection = await self._connect(f"outbox-admin:{self._service}")
        try:
            rows = await connection.fetch(
                """SELECT id, event_id, topic, aggregate_id, event_type, attempts, last_error, parked_at
                   FROM outbox WHERE published_at IS NULL AND parked_at IS NOT NULL ORDER BY id LIMIT $1""",
                limit,
            )
        finally:
            await connection.close()
        return [
            ParkedEvent(
                position=row["id"],
                event_id=str(row["event_id"]),
                topic=row["topic"],
                aggregate_id=row["aggregate_id"],
                event_type=row["event_type"],
                attempts=row["attempts"],
                last_error=row["last_error"],
                parked_at=row["parked_at"],
            )
            for row in rows
        ]

    async def unpark(self, positions: Sequence[int] | None = None) -> int:
        connection = await self._connect(f"outbox-admin:{self._service}")
        try:
            status = await connection.execute(
                """UPDATE outbox SET parked_at = NULL, attempts = 0
                   WHERE published_at IS NULL AND parked_at IS NOT NULL
                     AND ($1::bigint[] IS NULL OR id = ANY($1::bigint[]))""",
                None if positions is None else list(positions),
            )
        finally:
            await connection.close()
        return int(status.split()[-1])
