"""The insert-only docstore primitives against the real FerretDB and Kafka.

Each test uses its own database and its own Kafka topic (auto-create is off, so
the test creates it), and reads back what the relay published.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from dataclasses import asdict
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from pymongo import DESCENDING, AsyncMongoClient, IndexModel
from pymongo.asynchronous.database import AsyncDatabase

from shopmesh_platform.docstore import (
    AlreadyApplied,
    CurrentStateCache,
    Inbox,
    LeaseTiming,
    MongoOutboxStore,
    MongoRelay,
    NextState,
    OutboxEvent,
    SlotLease,
    Transition,
    TransitionConflict,
    TransitionLog,
    TransitionRefused,
    ensure_indexes,
)
from shopmesh_platform.docstore.cache import entry_filter, older_entry_filter, other_shape_filter
from shopmesh_platform.docstore.ids import inbox_id
from shopmesh_platform.docstore.outbox import PENDING_FILTER, UNFLAGGED_FILTER
from shopmesh_platform.docstore.records import Document
from shopmesh_platform.docstore.records import utc_now_ms as now
from shopmesh_platform.docstore.transitions import aggregate_filter, cause_filter, version_filter
from shopmesh_platform.events.topics import TopicSpec
from shopmesh_platform.kafka import KafkaConfig, header
from shopmesh_stack.settings import REPO
from shopmesh_stack.stack import Stack
from shopmesh_stack.topics import create_topics
from tests.integration.docstore_relay import LOG_NAME, SERVICE
from tests.integration.pushdown import find_pushed_down
from tests.polling import eventually

PARTITIONS = 3
WRITERS = 24
ROUNDS = 20
# Short slots so takeovers are testable in seconds.
TEST_LEASE = LeaseTiming(lease_seconds=2.0, renew_before_end=0.6, clock_margin=0.2, retry_interval=0.2)
TAKEOVER_BOUND = TEST_LEASE.lease_seconds + TEST_LEASE.renew_before_end + TEST_LEASE.retry_interval
# Room for a loaded machine on top of the bound the lease promises.
SLACK = 3.0


@pytest.fixture
async def database(stack: Stack) -> AsyncIterator[AsyncDatabase[dict[str, Any]]]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(stack.ferretdb.url, serverSelectionTimeoutMS=10_000)
    name = f"docstore_{uuid.uuid4().hex[:12]}"
    try:
        yield client[name]
    finally:
        await client.drop_database(name)
        await client.close()


@pytest.fixture
async def topic(stack: Stack) -> str:
    name = f"docstore-test-{uuid.uuid4().hex[:12]}"
    spec = TopicSpec(name, PARTITIONS, 1, {"local": 1, "cluster": 1}, {"local": 1, "cluster": 1})
    await create_topics(stack.kafka.bootstrap, [spec], replication=1)
    return name


def kafka(stack: Stack) -> KafkaConfig:
    return KafkaConfig(bootstrap_servers=stack.kafka.bootstrap, request_timeout_ms=10_000)


def event(topic: str, label: str) -> OutboxEvent:
    return OutboxEvent(topic, str(uuid.uuid4()), "shopmesh.test.v1.Moved", label.encode())


async def read_topic(stack: Stack, topic: str) -> list[tuple[bytes, str, bytes]]:
    """Every record on `topic` up to its end offsets now: (key, event id, payload), in partition order."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=stack.kafka.bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        records = []
        async with asyncio.timeout(60):
            while [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
                for batch in (await consumer.getmany(timeout_ms=500)).values():
                    records += [(r.key, header(r.headers, "event-id") or "", r.value) for r in batch]
        return records
    finally:
        await consumer.stop()


async def setup(database: AsyncDatabase[dict[str, Any]], publisher: str) -> tuple[TransitionLog, MongoOutboxStore]:
    log = TransitionLog(database, LOG_NAME)
    store = MongoOutboxStore(database, log, publisher=publisher)
    await ensure_indexes(log, store, SlotLease(database, SERVICE), Inbox(database))
    await ensure_indexes(log, store)  # idempotent
    return log, store


async def test_an_appended_transition_wakes_this_process_relay_before_its_poll_interval(
    database: AsyncDatabase[dict[str, Any]],
) -> None:
    log, store = await setup(database, "relay")
    waiting = asyncio.ensure_future(store.wait_for_events(600))
    await asyncio.sleep(0)  # let the wait start
    assert not waiting.done()
    await log.append(f"order-{uuid.uuid4()}", 0, {"status": "PENDING"}, event("t", "created"))
    # Far under the 600 s a relay with nothing to wake it would wait.
    await asyncio.wait_for(waiting, timeout=30)


async def test_one_writer_wins_each_transition_while_the_relay_publishes(
    stack: Stack, database: AsyncDatabase[dict[str, Any]], topic: str
) -> None:
    log, store = await setup(database, "relay")
    lease = SlotLease(database, SERVICE, holder="relay", timing=TEST_LEASE)
    relay = asyncio.create_task(MongoRelay(store, lease, kafka(stack), poll_interval=0.05).run())
    order = f"order-{uuid.uuid4()}"
    winners: list[Transition] = []
    losers: list[str] = []
    try:
        await eventually(lambda: asyncio.sleep(0, lease.valid()), bool, timeout=30)
        for round_number in range(1, ROUNDS + 1):
            barrier = asyncio.Barrier(WRITERS)

            async def writer(index: int, round_number: int = round_number, barrier: asyncio.Barrier = barrier) -> Any:
                current = await log.latest(order)
                # Everyone holds the same view before anyone inserts: a real race on version n+1.
                await barrier.wait()
                previous = 0 if current is None else current.version
                attempt = event(topic, f"round {round_number} writer {index}")
                try:
                    return await log.append(order, previous, {"round": round_number, "writer": index}, attempt)
                except TransitionConflict:
                    return attempt.event_id

            outcomes = await asyncio.gather(*(writer(i) for i in range(WRITERS)))
            won = [o for o in outcomes if isinstance(o, Transition)]
            assert len(won) == 1, f"round {round_number}: {len(won)} winners"
            assert won[0].version == round_number
            winners += won
            losers += [o for o in outcomes if isinstance(o, str)]
        published_during_race = await store.markers.count_documents({"published_at": {"$lt": winners[-1].committed_at}})
        await eventually(lambda: store.markers.count_documents({}), lambda n: n >= ROUNDS, timeout=60)
    finally:
        relay.cancel()
        await asyncio.gather(relay, return_exceptions=True)

    assert published_during_race > 0, "the relay published nothing while the writers raced"
    assert [t.version for t in [t async for t in log.history(order)]] == list(range(1, ROUNDS + 1))
    records = await read_topic(stack, topic)
    event_ids = [event_id for _, event_id, _ in records]
    # Exactly the winners' events, each once, in version order (one key, one partition); no loser's event.
    assert event_ids == [w.event.event_id for w in winners]
    assert {key for key, _, _ in records} == {order.encode()}
    assert not set(losers) & set(event_ids)
    assert await store.markers.count_documents({}) == ROUNDS
    assert await log.collection.count_documents({"published": True}) == ROUNDS


async def test_the_decision_helper_lets_one_racing_writer_through(database: AsyncDatabase[dict[str, Any]]) -> None:
    log, _ = await setup(database, "unused")
    order = f"order-{uuid.uuid4()}"
    await log.append(order, 0, {"status": "PENDING"}, event("t", "created"))
    for round_number in range(ROUNDS):

        def advance(current: Transition | None, round_number: int = round_number) -> NextState | None:
            if current is None or current.state.get("round", 0) != round_number:
                return None
            return NextState({"status": "PENDING", "round": round_number + 1}, event("t", f"round {round_number}"))

        async def writer(advance: Any = advance) -> str:
            try:
                await log.transition(order, advance)
                return "applied"
            except TransitionRefused:
                return "refused"

        outcomes = Counter(await asyncio.gather(*(writer() for _ in range(WRITERS))))
        assert outcomes == {"applied": 1, "refused": WRITERS - 1}
    latest = await log.latest(order)
    assert latest is not None
    assert (latest.version, latest.state["round"]) == (ROUNDS + 1, ROUNDS)


async def test_one_relay_holds_the_lease_and_another_takes_over(
    stack: Stack, database: AsyncDatabase[dict[str, Any]], topic: str
) -> None:
    log, store = await setup(database, "relay-b")
    leases = database.get_collection("leases")

    async def holders() -> set[str]:
        now_slot = int(time.time() // TEST_LEASE.lease_seconds)
        return {d["holder"] async for d in leases.find({"slot": {"$gte": now_slot}})}

    async def append_and_wait(count: int) -> list[Transition]:
        appended = [
            await log.append(f"order-{uuid.uuid4()}", 0, {"status": "PENDING"}, event(topic, "created"))
            for _ in range(count)
        ]
        ids = [t.id for t in appended]
        await eventually(lambda: store.markers.count_documents({"_id": {"$in": ids}}), lambda n: n == count, timeout=60)
        return appended

    relay_a = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.integration.docstore_relay",
        stack.ferretdb.url,
        database.name,
        stack.kafka.bootstrap,
        "relay-a",
        json.dumps(asdict(TEST_LEASE)),
        cwd=REPO,
    )
    lease_b = SlotLease(database, SERVICE, holder="relay-b", timing=TEST_LEASE)
    lease_c = SlotLease(database, SERVICE, holder="relay-c", timing=TEST_LEASE)
    relay_b = relay_c = None
    try:
        await eventually(holders, lambda h: h == {"relay-a"}, timeout=60)
        relay_b = asyncio.create_task(MongoRelay(store, lease_b, kafka(stack), poll_interval=0.05).run())
        first = await append_and_wait(10)
        assert {d["publisher"] async for d in store.markers.find({})} == {"relay-a"}
        assert not lease_b.valid()

        # A crash: no release, so relay-b waits for relay-a's slots to run out.
        relay_a.send_signal(signal.SIGKILL)
        await asyncio.wait_for(relay_a.wait(), 30)
        killed_at = time.monotonic()
        await eventually(lambda: asyncio.sleep(0, lease_b.valid()), bool, timeout=TAKEOVER_BOUND + SLACK + 30)
        took_over_after = time.monotonic() - killed_at
        second = await append_and_wait(10)
        assert {d["publisher"] async for d in store.markers.find({"_id": {"$in": [t.id for t in second]}})} == {
            "relay-b"
        }

        # A graceful stop releases the lease: relay-c takes over at its next attempt.
        relay_c = asyncio.create_task(MongoRelay(store, lease_c, kafka(stack), poll_interval=0.05).run())
        relay_b.cancel()
        await asyncio.gather(relay_b, return_exceptions=True)
        stopped_at = time.monotonic()
        await eventually(lambda: asyncio.sleep(0, lease_c.valid()), bool, timeout=30)
        handed_over_after = time.monotonic() - stopped_at
        third = await append_and_wait(5)
    finally:
        if relay_a.returncode is None:
            relay_a.kill()
            await asyncio.wait_for(relay_a.wait(), 30)
        for task in (relay_b, relay_c):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    assert took_over_after <= TAKEOVER_BOUND + SLACK, f"takeover after a crash took {took_over_after:.1f}s"
    assert handed_over_after < TEST_LEASE.lease_seconds, f"handover after a stop took {handed_over_after:.1f}s"
    records = await read_topic(stack, topic)
    assert Counter(event_id for _, event_id, _ in records) == Counter(t.event.event_id for t in first + second + third)


async def test_duplicate_deliveries_have_one_effect(database: AsyncDatabase[dict[str, Any]]) -> None:
    log, _ = await setup(database, "unused")
    inbox = Inbox(database)
    delivered = str(uuid.uuid4())
    firsts = await asyncio.gather(*(inbox.record("notifications", delivered, {"mail": "sent"}) for _ in range(WRITERS)))
    assert firsts.count(True) == 1
    assert await inbox.record("another-consumer", delivered)  # the entry is per consumer

    # An effect that is a transition: the transition's cause is the inbox entry, one insert for both.
    order = f"order-{uuid.uuid4()}"
    await log.append(order, 0, {"status": "PENDING"}, event("t", "created"))

    def confirm(current: Transition | None) -> NextState | None:
        if current is None or current.state["status"] != "PENDING":
            return None
        return NextState({"status": "CONFIRMED"}, event("t", "confirmed"))

    async def deliver(event_id: str) -> str:
        try:
            await log.transition(order, confirm, cause=inbox_id("orders-payments", event_id))
            return "applied"
        except AlreadyApplied:
            return "duplicate"
        except TransitionRefused:
            return "refused"

    payment_succeeded = str(uuid.uuid4())
    outcomes = Counter(await asyncio.gather(*(deliver(payment_succeeded) for _ in range(WRITERS))))
    assert outcomes == {"applied": 1, "duplicate": WRITERS - 1}
    # A redelivery long after, and a different event that the new state refuses.
    assert await deliver(payment_succeeded) == "duplicate"
    assert await deliver(str(uuid.uuid4())) == "refused"
    assert [t.state["status"] async for t in log.history(order)] == ["PENDING", "CONFIRMED"]


def lift_listed(state: Mapping[str, Any]) -> dict[str, Any]:
    return {"user_id": state.get("user_id"), "created": state.get("created")}


async def test_the_cache_rebuilt_from_the_log_equals_the_log(database: AsyncDatabase[dict[str, Any]]) -> None:
    log, _ = await setup(database, "unused")
    listing = IndexModel([("user_id", 1), ("created", DESCENDING)], name="user_id_newest_first")
    cache = CurrentStateCache(database, log, [listing], lift=lift_listed, shape=2)
    await ensure_indexes(cache)
    orders = [f"order-{i}-{uuid.uuid4()}" for i in range(6)]
    transitions: list[Transition] = []
    for number, order in enumerate(orders):
        previous = None
        for version, status in enumerate(("PENDING", "CONFIRMED", "SHIPPED")[: 1 + number % 3]):
            state = {"user_id": f"user-{number % 2}", "created": number, "status": status}
            previous = await log.append(order, version, state, event("t", status))
            transitions.append(previous)
    # Refreshes race in any order (older ones last): the cache never goes below a version it sees.
    await asyncio.gather(*(cache.refresh(t) for t in reversed(transitions)))
    # Damage: an entry from nowhere, a wrong entry, a missing entry, and an entry of the previous
    # shape (a previous version wrote the state only: nothing lifted to the top level).
    await cache.collection.insert_one({"_id": "order-unknown", "version": 9, "state": {}})
    await cache.collection.replace_one({"_id": orders[1]}, {"version": 1, "state": {"status": "bogus"}})
    await cache.collection.delete_one({"_id": orders[2]})
    latest_of_3 = await log.latest(orders[3])
    assert latest_of_3 is not None
    await cache.collection.replace_one(
        {"_id": orders[3]}, {"version": latest_of_3.version, "state": dict(latest_of_3.state)}
    )

    assert await cache.rebuild_all() == len(orders)
    cached = {d["_id"]: d async for d in cache.collection.find({})}
    # A second rebuild finds every entry right and writes none of them (a restart rewrote them all).
    assert await cache.rebuild_all() == len(orders)
    assert {d["_id"]: d["refreshed_at"] async for d in cache.collection.find({})} == {
        order: d["refreshed_at"] for order, d in cached.items()
    }
    expected = {}
    for order in orders:
        latest = await log.latest(order)
        assert latest is not None
        expected[order] = (latest.version, dict(latest.state), 2, lift_listed(latest.state))
    assert {
        order: (d["version"], d["state"], d["shape"], {"user_id": d["user_id"], "created": d["created"]})
        for order, d in cached.items()
    } == expected
    # The listing path: a user's aggregates, newest first, from the cache's top-level fields.
    listed = await cache.find({"user_id": "user-1"}, [("created", DESCENDING)], 10)
    assert [d["_id"] for d in listed] == [orders[5], orders[3], orders[1]]


async def test_cache_entries_of_an_older_shape_are_found_and_rewritten(database: AsyncDatabase[dict[str, Any]]) -> None:
    log, _ = await setup(database, "unused")
    cache = CurrentStateCache(database, log, lift=lift_listed, shape=2)
    order, old_shape, newer_shape = (f"order-{uuid.uuid4()}" for _ in range(3))
    for aggregate in (order, old_shape, newer_shape):
        await cache.refresh(await log.append(aggregate, 0, {"user_id": "u", "created": 1}, event("t", "created")))
    # A previous version's replica refreshed one entry (no shape, nothing lifted); a newer version another.
    old = await log.latest(old_shape)
    assert old is not None
    await cache.collection.replace_one({"_id": old_shape}, {"version": old.version, "state": dict(old.state)})
    await cache.collection.update_one({"_id": newer_shape}, {"$set": {"shape": 3}})
    assert {d["_id"] async for d in cache.collection.find({"user_id": "u"})} == {order, newer_shape}

    assert await cache.reshape() == 1
    assert {d["_id"] async for d in cache.collection.find({"user_id": "u"})} == {order, old_shape, newer_shape}
    shapes = {d["_id"]: d["shape"] async for d in cache.collection.find({})}
    assert shapes == {order: 2, old_shape: 2, newer_shape: 3}  # a newer shape is left to its version
    assert await cache.reshape() == 0


def legacy_transition(aggregate: str, version: int, topic: str, status: str) -> Document:
    """A transition document as the previous version inserted it: no `published` flag."""
    transition = Transition(aggregate, version, {"status": status}, event(topic, status), f"self:{uuid.uuid4()}", now())
    document = transition.to_document()
    del document["published"]
    return document


async def test_transitions_a_previous_version_wrote_are_published_once_in_order(
    stack: Stack, database: AsyncDatabase[dict[str, Any]], topic: str
) -> None:
    log, store = await setup(database, "relay")
    # Published by the previous version's relay (it left a marker): not again.
    published = legacy_transition(f"order-{uuid.uuid4()}", 1, topic, "created")
    await log.collection.insert_one(published)
    await store.markers.insert_one({"_id": published["_id"], "published_at": now()})
    # Two versions the previous version wrote but never published, then one this version writes.
    order = f"order-{uuid.uuid4()}"
    unpublished = [legacy_transition(order, 1, topic, "created"), legacy_transition(order, 2, topic, "confirmed")]
    await log.collection.insert_many(unpublished)
    third = await log.append(order, 2, {"status": "shipped"}, event(topic, "shipped"))
    assert [e.transition_id async for e in store.pending()] == [third.id]  # the flag alone misses the old ones

    lease = SlotLease(database, SERVICE, holder="relay", timing=TEST_LEASE)
    relay = asyncio.create_task(MongoRelay(store, lease, kafka(stack), poll_interval=0.05).run())
    try:
        await eventually(lambda: store.markers.count_documents({}), lambda n: n == 4, timeout=60)
    finally:
        relay.cancel()
        await asyncio.gather(relay, return_exceptions=True)

    records = await read_topic(stack, topic)
    expected = [d["event"]["event_id"] for d in unpublished] + [third.event.event_id]
    assert [event_id for _, event_id, _ in records] == expected
    assert {key for key, _, _ in records} == {order.encode()}
    flags = {d["_id"]: d.get("published") async for d in log.collection.find({})}
    assert flags == {published["_id"]: True, unpublished[0]["_id"]: True, unpublished[1]["_id"]: True, third.id: True}


async def test_an_event_whose_flag_was_not_set_is_published_again(database: AsyncDatabase[dict[str, Any]]) -> None:
    log, store = await setup(database, "relay")
    order = f"order-{uuid.uuid4()}"
    first = await log.append(order, 0, {"status": "PENDING"}, event("t", "created"))
    second = await log.append(order, 1, {"status": "CONFIRMED"}, event("t", "confirmed"))
    [pending, _] = [e async for e in store.pending()]
    # A relay crashed after inserting the first one's marker, before setting its flag.
    await store.markers.insert_one({"_id": first.id, "published_at": now()})
    assert await store.is_published(first.id)
    # It is published again (consumers deduplicate by event id), still before its successor.
    assert [e.transition_id async for e in store.pending()] == [first.id, second.id]
    await store.mark_published(pending)  # the duplicate marker is harmless; the flag is set
    assert [e.transition_id async for e in store.pending()] == [second.id]
    assert await store.backfill() == 0  # every transition this version wrote carries its flag


async def test_the_hot_lookups_are_pushed_down_to_postgresql(database: AsyncDatabase[dict[str, Any]]) -> None:
    log, store = await setup(database, "relay")
    cache = CurrentStateCache(database, log, lift=lift_listed, shape=2)
    order = f"order-{uuid.uuid4()}"
    created = await log.append(order, 0, {"user_id": "u", "created": 1}, event("t", "created"), cause="c:1")
    await cache.refresh(created)
    # Every collection exists: FerretDB explains a query of a missing one as not pushed down.
    await store.markers.insert_one({"_id": created.id})

    hot: dict[str, tuple[Any, Document]] = {
        "the relay's pending events": (log.collection, PENDING_FILTER),
        "the latest version and the history": (log.collection, aggregate_filter(order)),
        "one version (and the relay's flag set)": (log.collection, version_filter(order, 1)),
        "the transition of a cause (the consumers' inbox)": (log.collection, cause_filter("c:1")),
        "a cache refresh": (cache.collection, older_entry_filter(order, 2)),
        "a cache rebuild": (cache.collection, entry_filter(order)),
        "entries of an older shape": (cache.collection, other_shape_filter(2)),
    }
    assert {name: await find_pushed_down(c, q) for name, (c, q) in hot.items()} == dict.fromkeys(hot, True)
    # The check tells them apart: what FerretDB filters in Go after decoding the whole collection.
    decoded_whole: dict[str, tuple[Any, Document]] = {
        "a dotted path": (cache.collection, {"state.user_id": "u"}),
        "a range": (log.collection, {"committed_at": {"$gte": created.committed_at}}),
        "an $in": (log.collection, {"_id": {"$in": [created.id]}}),
        "the one-off backfill": (log.collection, UNFLAGGED_FILTER),
    }
    assert {name: await find_pushed_down(c, q) for name, (c, q) in decoded_whole.items()} == dict.fromkeys(
        decoded_whole, False
    )
