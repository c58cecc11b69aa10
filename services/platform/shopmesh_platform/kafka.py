"""Kafka events: protobuf payloads with the headers every consumer relies on.

Headers: `event-id` (UUID, the consumers' deduplication key), `event-type`
(the protobuf full name), `content-type` (application/x-protobuf) and, when a
trace is active, W3C `traceparent`. Key = aggregate id, so one aggregate's
events stay in order. The producer is idempotent with acks=all.

On a cluster the brokers require TLS client authentication (Strimzi's `tls`
listener): SHOPMESH_KAFKA_CA_FILE, SHOPMESH_KAFKA_CERT_FILE and
SHOPMESH_KAFKA_KEY_FILE name the files of the Secrets Strimzi creates (the
cluster CA's `ca.crt`, the KafkaUser's `user.crt` and `user.key`).
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.helpers import create_ssl_context
from google.protobuf.message import Message
from opentelemetry import propagate

from shopmesh_platform.config import ConfigError, EnvReader

CONTENT_TYPE = "application/x-protobuf"


TLS_VARIABLES = ("SHOPMESH_KAFKA_CA_FILE", "SHOPMESH_KAFKA_CERT_FILE", "SHOPMESH_KAFKA_KEY_FILE")


@dataclass(frozen=True)
class KafkaTls:
    """Files for TLS client authentication to the brokers (PEM)."""

    ca_file: str
    cert_file: str
    key_file: str

    def ssl_context(self) -> ssl.SSLContext:
        context: ssl.SSLContext = create_ssl_context(
            cafile=self.ca_file, certfile=self.cert_file, keyfile=self.key_file
        )
        return context


@dataclass(frozen=True)
class KafkaConfig:
    """Where the brokers are, and how to authenticate to them."""

    bootstrap_servers: str
    request_timeout_ms: int
    tls: KafkaTls | None = None

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments for every aiokafka client: TLS client auth when configured."""
        if self.tls is None:
            return {}
        return {"security_protocol": "SSL", "ssl_context": self.tls.ssl_context()}

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> KafkaConfig:
        read = EnvReader(env)
        servers = read.optional("SHOPMESH_KAFKA_BOOTSTRAP")
        if servers is None:
            raise ConfigError("SHOPMESH_KAFKA_BOOTSTRAP must be set (host:port[,host:port])")
        return cls(
            bootstrap_servers=servers,
            request_timeout_ms=read.integer("SHOPMESH_KAFKA_TIMEOUT_MS", 10_000, minimum=500, maximum=300_000),
            tls=_tls_from_env(read),
        )


def _tls_from_env(read: EnvReader) -> KafkaTls | None:
    """All three TLS files or none: half a TLS setup fails at start, naming what is missing."""
    values = {name: read.optional(name) for name in TLS_VARIABLES}
    if not any(values.values()):
        return None
    missing = [name for name, value in values.items() if value is None]
    if missing:
        raise ConfigError(f"{', '.join(missing)} must be set too: Kafka TLS needs a CA, a certificate and a key")
    ca, cert, key = (values[name] or "" for name in TLS_VARIABLES)
    return KafkaTls(ca_file=ca, cert_file=cert, key_file=key)


@dataclass(frozen=True)
class EventEnvelope:
    """What goes on the wire for one event."""

    topic: str
    key: bytes
    value: bytes
    headers: Sequence[tuple[str, bytes]]


def envelope(topic: str, aggregate_id: str, event_id: str, event: Message) -> EventEnvelope:
    """Serialize `event` with the standard headers (and the current trace context)."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    headers = [
        ("event-id", event_id.encode()),
        ("event-type", event.DESCRIPTOR.full_name.encode()),
        ("content-type", CONTENT_TYPE.encode()),
    ]
    if "traceparent" in carrier:
        headers.append(("traceparent", carrier["traceparent"].encode()))
    return EventEnvelope(topic, aggregate_id.encode(), event.SerializeToString(), headers)


def header(headers: Sequence[tuple[str, bytes]], name: str) -> str | None:
    """The value of header `name` in a consumed record, decoded."""
    for key, value in headers:
        if key == name:
            return value.decode()
    return None


class EventProducer:
    """An idempotent, acks=all producer of EventEnvelopes."""

    def __init__(self, config: KafkaConfig, client_id: str) -> None:
        self._producer = AIOKafkaProducer(
            bootstrap_servers=config.bootstrap_servers,
            client_id=client_id,
            enable_idempotence=True,
            acks="all",
            request_timeout_ms=config.request_timeout_ms,
            **config.client_options(),
        )

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        await self._producer.stop()

    async def send(self, event: EventEnvelope) -> None:
        """Return once the broker has acknowledged the record."""
        await self._producer.send_and_wait(event.topic, value=event.value, key=event.key, headers=list(event.headers))
