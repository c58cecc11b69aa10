"""A relay or a consumer in a process of its own, for tests that kill it.

    python -m tests.integration.events_worker relay DSN BOOTSTRAP SERVICE TOPIC [--hold-after-publish]
    python -m tests.integration.events_worker consume DSN BOOTSTRAP GROUP TOPIC [--effect-seconds S]

It reports on stdout, one line each: `LEADING` when the relay holds the lease,
`PUBLISHED <event ids>` after a batch was acknowledged (with
--hold-after-publish: before marking it, then it hangs there, to be killed),
`APPLYING <event id>` / `APPLIED <event id>` around each effect, and
`STOPPED` when the consumer drained after SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Sequence

import asyncpg
from prometheus_client import CollectorRegistry

from shopmesh.user.v1 import events_pb2 as user_events
from shopmesh_platform.events.consumer import EventContext, Handlers
from shopmesh_platform.events.outbox import (
    OutboxCounts,
    OutboxEvent,
    OutboxSession,
    ParkedEvent,
    PostgresOutboxStore,
)
from shopmesh_platform.events.relay import OutboxRelay
from shopmesh_platform.kafka import KafkaConfig
from tests.integration.events_support import FAST_RELAY, EventsEnv, make_consumer, record_effect


def say(line: str) -> None:
    print(line, flush=True)


class ReportingSession:
    """An outbox session that reports what the relay publishes (and can hang before marking)."""

    def __init__(self, inner: OutboxSession, hold_after_publish: bool) -> None:
        self._inner = inner
        self._hold = hold_after_publish

    async def pending(self, limit: int) -> Sequence[OutboxEvent]:
        return await self._inner.pending(limit)

    async def mark_published(self, events: Sequence[OutboxEvent]) -> None:
        if not events:
            return
        if self._hold:
            say("PUBLISHED " + " ".join(e.event_id for e in events))
            await asyncio.Event().wait()  # killed here, between publish and mark
        await self._inner.mark_published(events)
        say("PUBLISHED " + " ".join(e.event_id for e in events))

    async def record_failure(self, event: OutboxEvent, error: str, *, park: bool) -> None:
        await self._inner.record_failure(event, error, park=park)

    async def counts(self) -> OutboxCounts:
        return await self._inner.counts()

    async def wait_for_events(self, timeout: float) -> None:
        await self._inner.wait_for_events(timeout)


class ReportingStore:
    def __init__(self, inner: PostgresOutboxStore, hold_after_publish: bool) -> None:
        self._inner = inner
        self._hold = hold_after_publish

    @contextlib.asynccontextmanager
    async def lease(self, holder: str) -> AsyncIterator[OutboxSession]:
        async with self._inner.lease(holder) as session:
            say("LEADING")
            yield ReportingSession(session, self._hold)

    async def parked(self, limit: int = 100) -> Sequence[ParkedEvent]:
        return await self._inner.parked(limit)

    async def unpark(self, positions: Sequence[int] | None = None) -> int:
        return await self._inner.unpark(positions)


async def relay(args: argparse.Namespace) -> None:
    env = EventsEnv(args.dsn, KafkaConfig(args.bootstrap, 10_000), args.topic, args.name)
    store = ReportingStore(PostgresOutboxStore(env.dsn, env.service, standby_interval=0.1), args.hold_after_publish)
    await OutboxRelay(
        env.service, store, kafka=env.kafka, catalog=env.catalog, registry=CollectorRegistry(), settings=FAST_RELAY
    ).run()


async def consume(args: argparse.Namespace) -> None:
    env = EventsEnv(args.dsn, KafkaConfig(args.bootstrap, 10_000), args.topic, "worker")

    async def slow_effect(event: user_events.UserRegistered, context: EventContext[asyncpg.Connection]) -> None:
        say(f"APPLYING {context.event_id}")
        await record_effect(event, context)
        if args.effect_seconds:
            await asyncio.sleep(args.effect_seconds)  # a slow effect, still inside its transaction
        say(f"APPLIED {context.event_id}")

    handlers: Handlers[asyncpg.Connection] = Handlers()
    handlers.register(user_events.UserRegistered, slow_effect)
    pool = await asyncpg.create_pool(env.dsn, min_size=1, max_size=2)
    try:
        consumer = make_consumer(env, pool, CollectorRegistry(), args.name, handlers)
        loop = asyncio.get_running_loop()
        stopping: list[asyncio.Task[None]] = []
        loop.add_signal_handler(signal.SIGTERM, lambda: stopping.append(asyncio.ensure_future(consumer.stop())))
        await consumer.run()
        say("STOPPED")
    finally:
        await pool.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("role", choices=("relay", "consume"))
    parser.add_argument("dsn")
    parser.add_argument("bootstrap")
    parser.add_argument("name", help="the relay's service, or the consumer's group")
    parser.add_argument("topic")
    parser.add_argument("--hold-after-publish", action="store_true")
    parser.add_argument("--effect-seconds", type=float, default=0.0)
    args = parser.parse_args()
    asyncio.run(relay(args) if args.role == "relay" else consume(args))


if __name__ == "__main__":
    main()
