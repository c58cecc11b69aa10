"""The machine's limits as context: PostgreSQL commits/s with fsync, Kafka produce -> consume round trip.

PostgreSQL: pgbench from the installed PostgreSQL against a `bench` database of the
stack's own cluster (its settings as the services get them: fsync on), the built-in
simple-update script (one small write transaction each); the baseline in the same run
is the same load with synchronous_commit off, i.e. without waiting for the WAL flush.
If pgbench is missing, pg_test_fsync's fdatasync rate stands in.

Kafka: a producer built as the platform builds its own (idempotent, acks=all, the
project's client options) sends one record at a time to a topic of its own; a
consumer built as the platform's consumers are (no auto-commit, getmany with the
same poll timeout and batch) receives it. The baseline is the producer's
acknowledgement alone, so what the consume side adds shows.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from shopmesh_bench.stats import percentile
from shopmesh_platform.events.consumer import ConsumerSettings
from shopmesh_platform.kafka import KafkaConfig

TPS = re.compile(r"tps = ([0-9.]+) \(without initial connection time\)")
BENCH_DATABASE = "bench"
ROUND_TRIP_TOPIC = "bench-round-trip"
RECORD_DEADLINE_SECONDS = 30.0


async def _postgres_settings(dsn: str) -> dict[str, str]:
    connection = await asyncpg.connect(dsn)
    try:
        names = ("fsync", "synchronous_commit", "wal_sync_method", "full_page_writes")
        return {name: str(await connection.fetchval(f"SHOW {name}")) for name in names}
    finally:
        await connection.close()


async def _create_database(admin_dsn: str) -> None:
    connection = await asyncpg.connect(admin_dsn)
    try:
        if not await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", BENCH_DATABASE):
            await connection.execute(f"CREATE DATABASE {BENCH_DATABASE}")
    finally:
        await connection.close()


def _pgbench(pgbench: Path, port: int, seconds: float, extra_env: dict[str, str]) -> float:
    argv = [str(pgbench), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-n"]
    argv += ["-b", "simple-update", "-c", "4", "-j", "2", "-T", str(max(1, round(seconds))), BENCH_DATABASE]
    done = subprocess.run(argv, capture_output=True, text=True, env=extra_env, timeout=seconds + 120, check=False)
    found = TPS.search(done.stdout)
    if done.returncode != 0 or found is None:
        raise RuntimeError(f"pgbench failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    return float(found.group(1))


def postgres_commits(postgres_bin: Path, admin_dsn: str, port: int, seconds: float) -> dict[str, Any]:
    """Commits/s with fsync (the cluster's settings) and, as the baseline, without waiting for the flush."""
    settings = asyncio.run(_postgres_settings(admin_dsn))
    pgbench = postgres_bin / "pgbench"
    if not pgbench.exists():
        return {"tool": "pg_test_fsync", "settings": settings, **_pg_test_fsync(postgres_bin, seconds)}
    asyncio.run(_create_database(admin_dsn))
    base_env = {"PATH": "/usr/bin:/bin"}
    init = [str(pgbench), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-i", "-q", "-s", "1"]
    subprocess.run([*init, BENCH_DATABASE], capture_output=True, text=True, env=base_env, timeout=300, check=True)
    with_fsync = _pgbench(pgbench, port, seconds, base_env)
    without_wait = _pgbench(pgbench, port, seconds, {**base_env, "PGOPTIONS": "-c synchronous_commit=off"})
    return {
        "tool": "pgbench -b simple-update -c 4 -j 2",
        "settings": settings,
        "commits_per_second": with_fsync,
        "baseline_commits_per_second_synchronous_commit_off": without_wait,
    }


def _pg_test_fsync(postgres_bin: Path, seconds: float) -> dict[str, Any]:
    done = subprocess.run(
        [str(postgres_bin / "pg_test_fsync"), "-s", str(max(1, round(seconds)))],
        capture_output=True,
        text=True,
        timeout=seconds * 20 + 60,
        check=False,
    )
    rates = re.findall(r"fdatasync\s+([0-9.]+) ops/sec", done.stdout)
    return {"commits_per_second": float(rates[0]) if rates else None}


async def kafka_round_trip(config: KafkaConfig, messages: int) -> dict[str, Any]:
    """Sequential produce -> consume of `messages` records; p50/p99 of the ack and of the round trip."""
    admin = AIOKafkaAdminClient(bootstrap_servers=config.bootstrap_servers, **config.client_options())
    await admin.start()
    try:
        if ROUND_TRIP_TOPIC not in await admin.list_topics():
            await admin.create_topics([NewTopic(ROUND_TRIP_TOPIC, num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()
    defaults = ConsumerSettings(group="bench", topics=(ROUND_TRIP_TOPIC,))
    producer = AIOKafkaProducer(
        bootstrap_servers=config.bootstrap_servers,
        enable_idempotence=True,
        acks="all",
        request_timeout_ms=config.request_timeout_ms,
        **config.client_options(),
    )
    consumer = AIOKafkaConsumer(
        ROUND_TRIP_TOPIC,
        bootstrap_servers=config.bootstrap_servers,
        group_id=f"bench-{uuid.uuid4().hex[:8]}",
        enable_auto_commit=False,
        auto_offset_reset="latest",
        request_timeout_ms=config.request_timeout_ms,
        **config.client_options(),
    )
    await producer.start()
    await consumer.start()
    acks, trips = [], []
    try:
        await _wait_assigned(consumer)
        for index in range(messages + 5):  # the first few warm the connections up
            payload = f"{index}:{uuid.uuid4().hex}".encode()
            sent = time.perf_counter()
            await producer.send_and_wait(ROUND_TRIP_TOPIC, payload)
            acked = time.perf_counter()
            while not await _received(consumer, payload, defaults):
                if time.perf_counter() - sent > RECORD_DEADLINE_SECONDS:
                    raise RuntimeError(f"a record took over {RECORD_DEADLINE_SECONDS:g} s to come back")
            if index >= 5:
                acks.append(acked - sent)
                trips.append(time.perf_counter() - sent)
    finally:
        await consumer.stop()
        await producer.stop()
    return {
        "messages": len(trips),
        "round_trip_p50_ms": percentile(trips, 0.5) * 1000,
        "round_trip_p99_ms": percentile(trips, 0.99) * 1000,
        "baseline_ack_p50_ms": percentile(acks, 0.5) * 1000,
        "baseline_ack_p99_ms": percentile(acks, 0.99) * 1000,
        "consumer_poll_timeout_ms": defaults.poll_timeout_ms,
    }


async def _wait_assigned(consumer: AIOKafkaConsumer) -> None:
    deadline = time.monotonic() + 60
    while not consumer.assignment():
        if time.monotonic() > deadline:
            raise RuntimeError("the round-trip consumer got no partition within 60 s")
        await consumer.getmany(timeout_ms=200)
    # Position at the end now, so records sent from here on are the ones read.
    await consumer.seek_to_end()


async def _received(consumer: AIOKafkaConsumer, payload: bytes, settings: ConsumerSettings) -> bool:
    batches = await consumer.getmany(timeout_ms=settings.poll_timeout_ms, max_records=settings.max_batch)
    return any(record.value == payload for records in batches.values() for record in records)
