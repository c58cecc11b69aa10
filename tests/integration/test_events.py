"""The platform's event delivery on the real PostgreSQL and Kafka of the session
stack: outbox relay (crash safety, one leader, parking, commit order) and
idempotent consumers (dead letters, crash and drain). Each test has a database
and a topic of its own."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client import CollectorRegistry

from shopmesh.user.v1 import events_pb2 as user_events
from shopmesh_platform.events.consumer import EventContext, Handlers
from shopmesh_platform.events.dlq import DLQ_ATTEMPTS, DLQ_ERROR, DLQ_ERROR_TYPE, DLQ_GROUP, DLQ_TOPIC
from shopmesh_platform.events.envelope import header
from shopmesh_platform.events.outbox import PostgresOutboxStore, append_event
from shopmesh_stack.settings import REPO
from shopmesh_stack.stack import Stack
from tests.integration.events_support import (
    EventsEnv,
    Worker,
    append_many,
    event_ids,
    fetch_rows,
    fetch_value,
    make_consumer,
    make_env,
    make_relay,
    read_topic,
    record_effect,
    running,
    sample_event,
    sequences_by_key,
    workers,
)
from tests.polling import eventually


@pytest.fixture
async def env(stack: Stack, tmp_path: Path) -> EventsEnv:
    return await make_env(stack.postgres.dsn("postgres"), stack.kafka.bootstrap, tmp_path)


@pytest.fixture
async def pool(env: EventsEnv) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(env.dsn, min_size=1, max_size=4)
    yield pool
    await pool.close()


async def unpublished(env: EventsEnv) -> int:
    return int(await fetch_value(env.dsn, "SELECT count(*) FROM outbox WHERE published_at IS NULL"))  # type: ignore[call-overload]


async def effects(env: EventsEnv) -> list[asyncpg.Record]:
    return await fetch_rows(env.dsn, "SELECT event_id, aggregate_id, seq FROM effects ORDER BY id")


async def test_relay_killed_between_publish_and_mark_loses_nothing_and_the_effect_happens_once(
    env: EventsEnv, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    [event_id] = await append_many(env, [("order-1", 1)])
    with workers() as started:
        relay = Worker(
            tmp_path / "relay.log",
            "relay",
            env.dsn,
            env.kafka.bootstrap_servers,
            env.service,
            env.topic,
            "--hold-after-publish",
        )
        started.append(relay)
        await eventually(lambda: asyncio.to_thread(relay.said, "PUBLISHED"), bool, timeout=60)
        relay.kill(signal.SIGKILL)
        assert relay.process.wait(timeout=30) == -signal.SIGKILL
    assert await unpublished(env) == 1  # acknowledged by Kafka, never marked

    registry = CollectorRegistry()
    async with running(make_relay(env, registry).run()), running(make_consumer(env, pool, registry, "g1").run()):
        # Published twice (the first copy before the kill): the consumer sees both, applies one.
        records = await read_topic(env, env.topic, until=2)
        assert event_ids(records) == [event_id, event_id]
        await eventually(lambda: unpublished(env), lambda n: n == 0, timeout=30)
        duplicates = {"group": "g1", "topic": env.topic, "outcome": "duplicate"}
        await eventually(
            lambda: asyncio.sleep(0, registry.get_sample_value("consumer_events_total", duplicates)),
            lambda n: n == 1,
            timeout=60,
        )
    assert [(str(r["event_id"]), r["seq"]) for r in await effects(env)] == [(event_id, 1)]


async def test_a_poison_message_goes_to_the_dlq_and_the_partition_moves_on(env: EventsEnv, pool: asyncpg.Pool) -> None:
    poison_seq = 2
    attempts: list[int] = []

    async def fragile(event: user_events.UserRegistered, context: EventContext[asyncpg.Connection]) -> None:
        if int(event.first_name) == poison_seq:
            attempts.append(1)
            raise ValueError("cannot apply event 2")
        await record_effect(event, context)

    handlers: Handlers[asyncpg.Connection] = Handlers()
    handlers.register(user_events.UserRegistered, fragile)
    ids = await append_many(env, [("order-7", 1), ("order-7", poison_seq), ("order-7", 3), ("order-7", 4)])
    registry = CollectorRegistry()
    async with (
        running(make_relay(env, registry).run()),
        running(make_consumer(env, pool, registry, "g-poison", handlers).run()),
    ):
        [dead] = await read_topic(env, f"{env.topic}.dlq", until=1)
        await eventually(lambda: effects(env), lambda rows: len(rows) == 3, timeout=60)
    assert [r["seq"] for r in await effects(env)] == [1, 3, 4]  # the ones behind the poison, in order
    assert len(attempts) == 3  # the configured attempts, then the dead letter
    assert header(dead.headers, "event-id") == ids[1]
    assert header(dead.headers, DLQ_ATTEMPTS) == "3"
    assert header(dead.headers, DLQ_GROUP) == "g-poison"
    assert header(dead.headers, DLQ_ERROR_TYPE) == "ValueError"
    assert header(dead.headers, DLQ_ERROR) == "cannot apply event 2"
    assert header(dead.headers, DLQ_TOPIC) == env.topic
    assert dead.key == b"order-7"


async def test_a_consumer_killed_mid_batch_and_restarted_loses_nothing_and_applies_nothing_twice(
    env: EventsEnv, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    planned = [(f"cart-{n % 10}", n // 10) for n in range(200)]
    await append_many(env, planned)
    registry = CollectorRegistry()
    async with running(make_relay(env, registry).run()):
        await eventually(lambda: unpublished(env), lambda n: n == 0, timeout=60)
    with workers() as started:
        slow = Worker(
            tmp_path / "consumer.log",
            "consume",
            env.dsn,
            env.kafka.bootstrap_servers,
            "g-crash",
            env.topic,
            "--effect-seconds",
            "0.02",
        )
        started.append(slow)
        await eventually(lambda: effects(env), lambda rows: len(rows) >= 40, timeout=60)
        slow.kill(signal.SIGKILL)
        slow.process.wait(timeout=30)
    applied_before_restart = len(await effects(env))
    assert applied_before_restart < len(planned)  # killed mid-way
    async with running(make_consumer(env, pool, registry, "g-crash").run()):
        await eventually(
            lambda: effects(env), lambda rows: len({r["event_id"] for r in rows}) == len(planned), timeout=90
        )
    rows = await effects(env)
    assert len(rows) == len(planned)  # none applied twice
    by_key: dict[str, list[int]] = {}
    for row in rows:
        by_key.setdefault(row["aggregate_id"], []).append(row["seq"])
    assert all(seqs == sorted(seqs) for seqs in by_key.values())


async def test_two_relays_one_publishes_and_the_other_takes_over_when_it_dies(env: EventsEnv, tmp_path: Path) -> None:
    with workers() as started:
        first, second = (
            Worker(tmp_path / f"relay-{n}.log", "relay", env.dsn, env.kafka.bootstrap_servers, env.service, env.topic)
            for n in (1, 2)
        )
        started.extend([first, second])
        await eventually(
            lambda: asyncio.to_thread(lambda: first.said("LEADING") + second.said("LEADING")), bool, timeout=60
        )
        leader, standby = (first, second) if first.said("LEADING") else (second, first)
        before = await append_many(env, [(f"k-{n}", 1) for n in range(5)])
        await eventually(lambda: unpublished(env), lambda n: n == 0, timeout=60)
        assert not standby.said("LEADING") and not standby.said("PUBLISHED")
        assert set(" ".join(leader.said("PUBLISHED")).split()[1:]) - {"PUBLISHED"} >= set(before)

        leader.kill(signal.SIGKILL)
        leader.process.wait(timeout=30)
        killed_at = time.monotonic()
        after = await append_many(env, [(f"k-{n}", 2) for n in range(5)])
        await eventually(lambda: unpublished(env), lambda n: n == 0, timeout=60)
        takeover = time.monotonic() - killed_at
        assert standby.said("LEADING")
        published_by_standby = {word for line in standby.said("PUBLISHED") for word in line.split()[1:]}
        assert published_by_standby >= set(after)
    # Lease: a dead holder's session ends with its process; the standby polls every 0.1 s.
    assert takeover < 20
    records = await read_topic(env, env.topic, until=10)
    assert sorted(event_ids(records)) == sorted(before + after)


async def test_transactions_on_one_aggregate_are_published_in_commit_order(env: EventsEnv) -> None:
    aggregate = f"order-{uuid.uuid4()}"
    first = await asyncpg.connect(env.dsn)
    second = await asyncpg.connect(env.dsn)
    commits: list[int] = []
    try:
        tx_first = first.transaction()
        await tx_first.start()
        await append_event_in(first, env, aggregate, 1)

        async def second_transaction() -> None:
            async with second.transaction():
                await append_event_in(second, env, aggregate, 2)
            commits.append(2)

        racing = asyncio.ensure_future(second_transaction())
        second_pid = second.get_server_pid()

        async def second_is_waiting_or_done() -> bool:
            waiting = await fetch_value(
                env.dsn, "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1", second_pid
            )
            return bool(waiting) or racing.done()

        await eventually(second_is_waiting_or_done, bool, timeout=30)
        await tx_first.commit()
        commits.append(1)
        await racing
    finally:
        await first.close()
        await second.close()
    assert commits == [1, 2]  # the second transaction waited for the first one's commit
    registry = CollectorRegistry()
    async with running(make_relay(env, registry).run()):
        records = await read_topic(env, env.topic, until=2)
    assert sequences_by_key(records)[aggregate] == commits


async def test_a_commit_wakes_the_lease_holder_before_its_poll_interval(env: EventsEnv, pool: asyncpg.Pool) -> None:
    """The relay waits for `outbox`'s NOTIFY (migration 0003's trigger), delivered when the insert commits."""
    async with PostgresOutboxStore(env.dsn, env.service).lease("wake-test") as session:
        waiting = asyncio.ensure_future(session.wait_for_events(600))
        async with pool.acquire() as connection, connection.transaction():
            await append_event_in(connection, env, "k-wake", 1)
        # Far under the 600 s a relay with nothing to wake it would wait.
        await asyncio.wait_for(waiting, timeout=30)


async def append_event_in(connection: asyncpg.Connection, env: EventsEnv, aggregate: str, seq: int) -> None:
    await append_event(connection, env.topic, aggregate, sample_event(aggregate, seq))


async def test_a_row_for_an_undeclared_topic_is_parked_and_does_not_block_the_rows_behind(
    env: EventsEnv, pool: asyncpg.Pool
) -> None:
    async with pool.acquire() as connection, connection.transaction():
        await append_event_in(connection, EventsEnv(env.dsn, env.kafka, "no-such-topic", env.service), "k-bad", 1)
    ids = await append_many(env, [("k-good", 1), ("k-good", 2)])
    registry = CollectorRegistry()
    async with running(make_relay(env, registry).run()):
        records = await read_topic(env, env.topic, until=2)
        await eventually(
            lambda: asyncio.sleep(0, registry.get_sample_value("outbox_parked_events")), lambda n: n == 1, timeout=30
        )
    assert event_ids(records) == ids
    assert registry.get_sample_value("outbox_parked_total") == 1
    assert registry.get_sample_value("outbox_pending_events") == 0
    [parked] = await fetch_rows(
        env.dsn, "SELECT topic, attempts, last_error, parked_at FROM outbox WHERE published_at IS NULL"
    )
    assert parked["topic"] == "no-such-topic" and parked["parked_at"] is not None
    assert "not declared" in parked["last_error"]


async def test_sigterm_while_applying_an_effect_completes_it_and_commits_its_offset(
    env: EventsEnv, tmp_path: Path
) -> None:
    [event_id] = await append_many(env, [("slow-1", 1)])
    registry = CollectorRegistry()
    async with running(make_relay(env, registry).run()):
        [record] = await read_topic(env, env.topic, until=1)
    with workers() as started:
        worker = Worker(
            tmp_path / "drain.log",
            "consume",
            env.dsn,
            env.kafka.bootstrap_servers,
            "g-drain",
            env.topic,
            "--effect-seconds",
            "2",
        )
        started.append(worker)
        await eventually(lambda: asyncio.to_thread(worker.said, "APPLYING"), bool, timeout=60)
        worker.kill(signal.SIGTERM)
        assert await asyncio.to_thread(worker.process.wait, 30) == 0
        lines = worker.lines()
    assert lines.index(f"APPLIED {event_id}") < lines.index("STOPPED")
    assert [str(r["event_id"]) for r in await effects(env)] == [event_id]
    reader = AIOKafkaConsumer(
        bootstrap_servers=env.kafka.bootstrap_servers, group_id="g-drain", enable_auto_commit=False
    )
    await reader.start()
    try:
        committed = await reader.committed(TopicPartition(env.topic, record.partition))
    finally:
        await reader.stop()
    assert committed == record.offset + 1


async def test_dead_letters_are_listed_and_redriven_by_the_dlq_command(env: EventsEnv, pool: asyncpg.Pool) -> None:
    broken = {"yes"}

    async def until_fixed(event: user_events.UserRegistered, context: EventContext[asyncpg.Connection]) -> None:
        if broken:
            raise RuntimeError("downstream refused")
        await record_effect(event, context)

    handlers: Handlers[asyncpg.Connection] = Handlers()
    handlers.register(user_events.UserRegistered, until_fixed)
    [event_id] = await append_many(env, [("order-9", 1)])
    registry = CollectorRegistry()
    consumer = make_consumer(env, pool, registry, "g-redrive", handlers)
    async with running(make_relay(env, registry).run()), running(consumer.run()):
        await read_topic(env, f"{env.topic}.dlq", until=1)
        listing = await asyncio.to_thread(dlq_command, env, "list", env.topic)
        assert f"event-id={event_id}" in listing
        assert "group=g-redrive attempts=3 error=RuntimeError: downstream refused" in listing
        broken.clear()  # the cause is fixed: redrive
        redriven = await asyncio.to_thread(dlq_command, env, "redrive", env.topic, "--event-id", event_id)
        assert "1 message(s) redriven" in redriven
        await eventually(lambda: effects(env), lambda rows: len(rows) == 1, timeout=60)
    assert [str(r["event_id"]) for r in await effects(env)] == [event_id]


def dlq_command(env: EventsEnv, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "shopmesh_stack", "dlq", "--bootstrap", env.kafka.bootstrap_servers, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout
