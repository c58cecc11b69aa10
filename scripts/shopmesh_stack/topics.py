"""Kafka topics of kafka/topics.yaml (read by shopmesh_platform.events.topics): created if missing.

Every declared topic also gets its `<name>.dlq` twin (same partitions,
`dlq_retention_days`). Creating is idempotent: topics that exist are left alone.
"""

from __future__ import annotations

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import for_code

from shopmesh_platform.events.topics import TopicSpec


async def broker_answers(bootstrap: str) -> bool:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
    try:
        await admin.start()
        await admin.list_topics()
        return True
    except Exception:
        return False
    finally:
        await admin.close()


async def create_topics(bootstrap: str, specs: list[TopicSpec], *, replication: int) -> list[str]:
    """Create the missing topics; returns their names."""
    environment = "local" if replication == 1 else "cluster"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [spec for spec in specs if spec.name not in existing]
        if missing:
            # aiokafka's admin client returns per-topic error codes instead of raising.
            response = await admin.create_topics(
                [
                    NewTopic(
                        name=spec.name,
                        num_partitions=spec.partitions,
                        replication_factor=replication,
                        topic_configs={
                            "retention.ms": str(spec.retention_ms()),
                            "min.insync.replicas": str(spec.min_insync_replicas[environment]),
                        },
                    )
                    for spec in missing
                ]
            )
            failures = [
                f"{name}: {for_code(code).__name__} {message or ''}".strip()
                for name, code, message in response.topic_errors
                if code != 0
            ]
            if failures:
                raise RuntimeError("kafka: creating topics failed: " + "; ".join(failures))
        return [spec.name for spec in missing]
    finally:
        await admin.close()
