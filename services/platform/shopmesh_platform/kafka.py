"""Where the Kafka brokers are (KafkaConfig), read once from the environment.

The event envelope, producer, relay and consumers live in
`shopmesh_platform.events`; `header` is re-exported here for existing callers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from shopmesh_platform.config import ConfigError, EnvReader
from shopmesh_platform.events.envelope import header

__all__ = ["KafkaConfig", "header"]


@dataclass(frozen=True)
class KafkaConfig:
    """Where the brokers are."""

    bootstrap_servers: str
    request_timeout_ms: int

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> KafkaConfig:
        read = EnvReader(env)
        servers = read.optional("SHOPMESH_KAFKA_BOOTSTRAP")
        if servers is None:
            raise ConfigError("SHOPMESH_KAFKA_BOOTSTRAP must be set (host:port[,host:port])")
        return cls(
            bootstrap_servers=servers,
            request_timeout_ms=read.integer("SHOPMESH_KAFKA_TIMEOUT_MS", 10_000, minimum=500, maximum=300_000),
        )
