"""SIGTERM to a service built on the Runtime while its consumer applies an effect:
the effect completes, its offset is committed, and the process exits 0. The
event gets there through the runtime's own outbox relay (started because the
service publishes), from the service's own outbox."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import yaml
from aiokafka import AIOKafkaConsumer, TopicPartition

from shopmesh_platform.events.topics import DEFAULT_TOPICS_FILE
from shopmesh_platform.mesh import DEFAULT_MESH_FILE
from shopmesh_stack.settings import REPO
from shopmesh_stack.stack import Stack
from tests.integration.events_support import EventsEnv, append_many, fetch_rows, make_env, read_topic
from tests.polling import eventually


def mesh_with_test_topic(env: EventsEnv, tmp_path: Path) -> tuple[Path, Path]:
    """The real declaration, with inventory also consuming the test's topic (declared beside the real ones)."""
    topics = yaml.safe_load(DEFAULT_TOPICS_FILE.read_text())
    topics["topics"][env.topic] = {"partitions": 3, "retention_days": 1, "key": "test aggregate"}
    mesh = yaml.safe_load(DEFAULT_MESH_FILE.read_text())
    mesh["services"]["inventory"]["consumes"].append(env.topic)
    topics_file, mesh_file = tmp_path / "topics.yaml", tmp_path / "mesh.yaml"
    topics_file.write_text(yaml.safe_dump(topics))
    mesh_file.write_text(yaml.safe_dump(mesh))
    return mesh_file, topics_file


async def test_sigterm_mid_effect_completes_it_commits_and_exits_zero(stack: Stack, tmp_path: Path) -> None:
    env = await make_env(stack.postgres.dsn("postgres"), stack.kafka.bootstrap, tmp_path)
    mesh_file, topics_file = mesh_with_test_topic(env, tmp_path)
    [event_id] = await append_many(env, [("slow-1", 1)])  # in the service's own outbox
    log = tmp_path / "runtime.log"
    process_env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "SHOPMESH_MESH_FILE": str(mesh_file),
        "SHOPMESH_TOPICS_FILE": str(topics_file),
        "SHOPMESH_DATABASE_URL": env.dsn,
        "SHOPMESH_KAFKA_BOOTSTRAP": env.kafka.bootstrap_servers,
        "SHOPMESH_GRPC_PORT": "0",
        "SHOPMESH_METRICS_PORT": "0",
        "SHOPMESH_DRAIN_GRACE_SECONDS": "10",
        "MESH_TLS": "off",
        "SHOPMESH_ADDRESS_USERS": "127.0.0.1:1",  # the deny-list's issuer is not needed here
        "SHOPMESH_TEST_TOPIC": env.topic,
        "SHOPMESH_TEST_EFFECT_SECONDS": "3",
    }
    with log.open("w") as output:
        process = await asyncio.to_thread(
            subprocess.Popen,
            [sys.executable, "-m", "tests.integration.runtime_worker"],
            cwd=REPO,
            env=process_env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        try:

            async def applying() -> bool:
                return f"APPLYING {event_id}" in log.read_text()

            await eventually(applying, bool, timeout=90)
            process.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(process.wait, 60) == 0, log.read_text()[-3000:]
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=30)
    lines = log.read_text().splitlines()
    assert lines.index(f"APPLIED {event_id}") < lines.index("EXITING")
    rows = await fetch_rows(env.dsn, "SELECT event_id FROM effects")
    assert [str(row["event_id"]) for row in rows] == [event_id]
    [record] = await read_topic(env, env.topic, until=1)
    reader = AIOKafkaConsumer(
        bootstrap_servers=env.kafka.bootstrap_servers, group_id="inventory.drain-test", enable_auto_commit=False
    )
    await reader.start()
    try:
        committed = await reader.committed(TopicPartition(env.topic, record.partition))
    finally:
        await reader.stop()
    assert committed == record.offset + 1
