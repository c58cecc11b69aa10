"""Dead letters: a message that keeps failing moves to `<topic>.dlq`, and back.

`dead_letter` builds the DLQ record: the original key, value and headers, plus
headers naming the failure (`dlq-error`, `dlq-error-type`), the consumer group
and the attempt count, and where it came from (topic, partition, offset).
`read_dead_letters` lists a topic's dead letters with those headers, and
`redrive` publishes chosen ones to their original topic again with their
original headers; consumers deduplicate by event id, so redriving one twice,
or one that had been applied after all, is harmless. The operator command is
`make dlq` (scripts/shopmesh_stack).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from shopmesh_platform.events.envelope import EVENT_ID, EVENT_TYPE, EventEnvelope, KafkaHeaders, header
from shopmesh_platform.events.producer import EventProducer
from shopmesh_platform.events.topics import DLQ_SUFFIX, UndeclaredTopic, dead_letter_topic
from shopmesh_platform.kafka import KafkaConfig

DLQ_PREFIX = "dlq-"
DLQ_ERROR = "dlq-error"
DLQ_ERROR_TYPE = "dlq-error-type"
DLQ_GROUP = "dlq-consumer-group"
DLQ_ATTEMPTS = "dlq-attempts"
DLQ_TOPIC = "dlq-original-topic"
DLQ_PARTITION = "dlq-original-partition"
DLQ_OFFSET = "dlq-original-offset"
ERROR_TEXT_LIMIT = 1000


@dataclass(frozen=True)
class DeadLetter:
    """One message of a `<topic>.dlq`, with the failure its headers describe."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: KafkaHeaders
    original_topic: str
    original_partition: int | None
    original_offset: int | None
    error: str
    error_type: str
    group: str
    attempts: int
    event_id: str | None
    event_type: str | None


def dead_letter(
    *,
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes,
    headers: KafkaHeaders,
    error: BaseException,
    group: str,
    attempts: int,
) -> EventEnvelope:
    """The `<topic>.dlq` record for a message that failed `attempts` times in `group`."""
    original = [(name, data) for name, data in headers if not name.startswith(DLQ_PREFIX)]
    failure = [
        (DLQ_ERROR, str(error)[:ERROR_TEXT_LIMIT].encode()),
        (DLQ_ERROR_TYPE, type(error).__name__.encode()),
        (DLQ_GROUP, group.encode()),
        (DLQ_ATTEMPTS, str(attempts).encode()),
        (DLQ_TOPIC, topic.encode()),
        (DLQ_PARTITION, str(partition).encode()),
        (DLQ_OFFSET, str(offset).encode()),
    ]
    return EventEnvelope(dead_letter_topic(topic), key or b"", value, [*original, *failure])


def _int_or_none(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def parse_dead_letter(
    dlq_topic: str, *, partition: int, offset: int, key: bytes | None, value: bytes, headers: KafkaHeaders
) -> DeadLetter:
    """Read the failure headers of a DLQ message (tolerant: an operator tool must show odd ones too)."""
    fallback_topic = dlq_topic.removesuffix(DLQ_SUFFIX)
    return DeadLetter(
        partition=partition,
        offset=offset,
        key=key,
        value=value,
        headers=tuple(headers),
        original_topic=header(headers, DLQ_TOPIC) or fallback_topic,
        original_partition=_int_or_none(header(headers, DLQ_PARTITION)),
        original_offset=_int_or_none(header(headers, DLQ_OFFSET)),
        error=header(headers, DLQ_ERROR) or "",
        error_type=header(headers, DLQ_ERROR_TYPE) or "",
        group=header(headers, DLQ_GROUP) or "",
        attempts=_int_or_none(header(headers, DLQ_ATTEMPTS)) or 0,
        event_id=header(headers, EVENT_ID),
        event_type=header(headers, EVENT_TYPE),
    )


def redrive_envelope(letter: DeadLetter) -> EventEnvelope:
    """The message as it was before it failed: original topic, key, value and headers."""
    headers = [(name, data) for name, data in letter.headers if not name.startswith(DLQ_PREFIX)]
    return EventEnvelope(letter.original_topic, letter.key or b"", letter.value, headers)


async def read_dead_letters(kafka: KafkaConfig, topic: str) -> list[DeadLetter]:
    """Every message now in `<topic>.dlq`, oldest first per partition."""
    dlq = dead_letter_topic(topic)
    admin = AIOKafkaAdminClient(
        bootstrap_servers=kafka.bootstrap_servers, request_timeout_ms=kafka.request_timeout_ms, **kafka.client_options()
    )
    await admin.start()
    try:
        [described] = await admin.describe_topics([dlq])
    finally:
        await admin.close()
    if described.get("error_code"):
        raise UndeclaredTopic(f"topic {dlq!r} does not exist")
    assigned = [
        TopicPartition(dlq, p["partition"]) for p in sorted(described["partitions"], key=lambda p: p["partition"])
    ]
    if not assigned:
        return []
    consumer = AIOKafkaConsumer(
        bootstrap_servers=kafka.bootstrap_servers,
        group_id=None,
        enable_auto_commit=False,
        request_timeout_ms=kafka.request_timeout_ms,
        **kafka.client_options(),
    )
    await consumer.start()
    try:
        consumer.assign(assigned)
        await consumer.seek_to_beginning(*assigned)
        ends = await consumer.end_offsets(assigned)
        letters: list[DeadLetter] = []
        for tp in assigned:
            while await consumer.position(tp) < ends[tp]:
                for record in (await consumer.getmany(tp, timeout_ms=1000)).get(tp, []):
                    if record.offset < ends[tp]:
                        letters.append(
                            parse_dead_letter(
                                dlq,
                                partition=tp.partition,
                                offset=record.offset,
                                key=record.key,
                                value=record.value or b"",
                                headers=record.headers or (),
                            )
                        )
        return letters
    finally:
        await consumer.stop()


async def redrive(kafka: KafkaConfig, topic: str, event_ids: Collection[str] | None = None) -> Sequence[DeadLetter]:
    """Publish the dead letters of `topic` (those with `event_ids`, or all) to the original topic again."""
    chosen = [
        letter
        for letter in await read_dead_letters(kafka, topic)
        if event_ids is None or (letter.event_id is not None and letter.event_id in event_ids)
    ]
    producer = EventProducer(kafka, client_id="dlq-redrive")
    await producer.start()
    try:
        for letter in chosen:
            await producer.send(redrive_envelope(letter))
    finally:
        await producer.stop()
    return chosen
