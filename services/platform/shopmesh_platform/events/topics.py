"""The topics declared in kafka/topics.yaml, the only topics that exist.

Kafka auto-creation is off, so a topic name in code that the file does not
declare is a bug: the relay parks such events instead of waiting forever for
the topic. Every declared topic has a `<name>.dlq` twin (same partitions,
`dlq_retention_days`). The file is read here only: the local stack creates the
topics from `load_topic_specs`, the mesh declaration checks its topics against
`TopicCatalog`. The constants below are the one place Python spells a topic
name; a unit test checks each against the file.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

DEFAULT_TOPICS_FILE = Path(__file__).resolve().parents[4] / "kafka" / "topics.yaml"
DLQ_SUFFIX = ".dlq"
DAY_MS = 24 * 60 * 60 * 1000

USER_EVENTS = "user-events"
ORDER_EVENTS = "order-events"
PAYMENT_EVENTS = "payment-events"
INVENTORY_EVENTS = "inventory-events"
NOTIFICATION_EVENTS = "notification-events"


class UndeclaredTopic(LookupError):
    """A topic that kafka/topics.yaml does not declare."""


def dead_letter_topic(topic: str) -> str:
    return f"{topic}{DLQ_SUFFIX}"


def declared_topic_names(path: Path = DEFAULT_TOPICS_FILE) -> list[str]:
    """The topics kafka/topics.yaml declares (without DLQ twins), in file order."""
    return list(_document(path)["topics"])


@dataclass(frozen=True)
class TopicSpec:
    """One topic as Kafka needs it created (a DLQ twin is a spec of its own)."""

    name: str
    partitions: int
    retention_days: int
    # Per environment (`local`, `cluster`).
    min_insync_replicas: Mapping[str, int]
    replication: Mapping[str, int]

    def retention_ms(self) -> int:
        return self.retention_days * DAY_MS


def _document(path: Path) -> Mapping[str, Any]:
    document: Any = yaml.safe_load(path.read_text())
    declared = document.get("topics") if isinstance(document, dict) else None
    if not isinstance(declared, dict) or not declared or not all(isinstance(n, str) and n for n in declared):
        raise ValueError(f"{path}: 'topics' must be a non-empty mapping of topic names")
    checked: Mapping[str, Any] = document
    return checked


def load_topic_specs(path: Path = DEFAULT_TOPICS_FILE) -> list[TopicSpec]:
    """Every declared topic and its DLQ twin, in file order."""
    document = _document(path)
    defaults = document["defaults"]
    common = {"replication": defaults["replication"], "min_insync_replicas": defaults["min_insync_replicas"]}
    specs = []
    for name, raw in document["topics"].items():
        partitions = int(raw["partitions"])
        specs.append(TopicSpec(name, partitions, int(raw["retention_days"]), **common))
        specs.append(TopicSpec(dead_letter_topic(name), partitions, int(defaults["dlq_retention_days"]), **common))
    return specs


@dataclass(frozen=True)
class TopicCatalog:
    """The declared topics (their DLQ twins included)."""

    topics: frozenset[str]

    @classmethod
    def from_names(cls, names: Iterable[str]) -> TopicCatalog:
        names = list(names)
        return cls(frozenset(names) | {dead_letter_topic(name) for name in names})

    @classmethod
    def load(cls, path: Path = DEFAULT_TOPICS_FILE) -> TopicCatalog:
        return cls.from_names(declared_topic_names(path))

    def base_topics(self) -> list[str]:
        """The declared topics without their DLQ twins, sorted."""
        return sorted(t for t in self.topics if not t.endswith(DLQ_SUFFIX))

    def is_declared(self, topic: str) -> bool:
        return topic in self.topics

    def require(self, topic: str) -> str:
        if topic not in self.topics:
            raise UndeclaredTopic(f"topic {topic!r} is not declared in kafka/topics.yaml")
        return topic
