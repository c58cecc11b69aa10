"""The topics declared in kafka/topics.yaml, the only topics that exist.

Kafka auto-creation is off, so a topic name in code that the file does not
declare is a bug: the relay parks such events instead of waiting forever for
the topic. Every declared topic has a `<name>.dlq` twin. Names used in code
are the constants below; a unit test checks each is declared.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import yaml

DEFAULT_TOPICS_FILE = Path(__file__).resolve().parents[4] / "kafka" / "topics.yaml"
DLQ_SUFFIX = ".dlq"

USER_EVENTS = "user-events"
ORDER_EVENTS = "order-events"
PAYMENT_EVENTS = "payment-events"
INVENTORY_EVENTS = "inventory-events"
NOTIFICATION_EVENTS = "notification-events"


class UndeclaredTopic(LookupError):
    """A topic that kafka/topics.yaml does not declare."""


def dead_letter_topic(topic: str) -> str:
    return f"{topic}{DLQ_SUFFIX}"


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
        document = yaml.safe_load(path.read_text())
        declared = document.get("topics") if isinstance(document, dict) else None
        if not isinstance(declared, dict) or not declared:
            raise ValueError(f"{path}: no `topics:` mapping")
        return cls.from_names(str(name) for name in declared)

    def is_declared(self, topic: str) -> bool:
        return topic in self.topics

    def require(self, topic: str) -> str:
        if topic not in self.topics:
            raise UndeclaredTopic(f"topic {topic!r} is not declared in kafka/topics.yaml")
        return topic
