"""A Kafka outage: writes keep succeeding into the outbox and the backlog gauge
grows; when Kafka is back the relay drains it, and every event arrives once in
per-key order. Stops the shared stack's Kafka, so it runs last."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import asyncpg
import pytest
from prometheus_client import CollectorRegistry

from shopmesh_stack.stack import Stack
from tests.integration.events_support import (
    EventsEnv,
    append,
    event_ids,
    make_env,
    make_relay,
    read_topic,
    running,
    sequences_by_key,
)
from tests.polling import eventually

EVENTS = 1000
KEYS = 50


async def write_events(env: EventsEnv) -> list[str]:
    """1,000 events over 50 keys, each in its own transaction, keys written concurrently."""

    async def one_key(pool: asyncpg.Pool, key: str) -> list[str]:
        async with pool.acquire() as connection:
            return [await append(connection, env, key, seq) for seq in range(EVENTS // KEYS)]

    pool = await asyncpg.create_pool(env.dsn, min_size=1, max_size=10)
    try:
        written = await asyncio.gather(*(one_key(pool, f"key-{n}") for n in range(KEYS)))
    finally:
        await pool.close()
    return list(itertools.chain.from_iterable(written))


@pytest.mark.restarts_stack
async def test_kafka_outage_the_backlog_grows_then_drains_in_order(stack: Stack, tmp_path: Path) -> None:
    env = await make_env(stack.postgres.dsn("postgres"), stack.kafka.bootstrap, tmp_path)
    registry = CollectorRegistry()

    def pending() -> float | None:
        return registry.get_sample_value("outbox_pending_events")

    async with running(make_relay(env, registry).run()):
        await eventually(lambda: asyncio.sleep(0, pending()), lambda n: n == 0, timeout=30)
        await asyncio.to_thread(stack.stop, stack.kafka)
        try:
            written = await write_events(env)  # the outbox absorbs the outage
            await eventually(lambda: asyncio.sleep(0, pending()), lambda n: n == EVENTS, timeout=60)
        finally:
            await asyncio.to_thread(stack.start, stack.kafka)
        await eventually(lambda: asyncio.sleep(0, pending()), lambda n: n == 0, timeout=120)
    records = await read_topic(env, env.topic, until=EVENTS, timeout=120)
    assert sorted(event_ids(records)) == sorted(written)  # every event, once
    sequences = sequences_by_key(records)
    assert len(sequences) == KEYS
    assert all(seqs == list(range(EVENTS // KEYS)) for seqs in sequences.values())
