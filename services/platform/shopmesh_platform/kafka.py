"""Where the Kafka brokers are and how to authenticate to them (KafkaConfig), read once.

The event envelope, producer, relay and consumers live in
`shopmesh_platform.events`; `header` is re-exported here for existing callers.

On a cluster the brokers require TLS client authentication (Strimzi's `tls`
listener): SHOPMESH_KAFKA_CA_FILE, SHOPMESH_KAFKA_CERT_FILE and
SHOPMESH_KAFKA_KEY_FILE name the files of the Secrets Strimzi creates (the
cluster CA's `ca.crt`, the KafkaUser's `user.crt` and `user.key`). Every aiokafka
client the platform builds takes `KafkaConfig.client_options()`.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiokafka.helpers import create_ssl_context

from shopmesh_platform.config import ConfigError, EnvReader
from shopmesh_platform.events.envelope import header

__all__ = ["KafkaConfig", "KafkaTls", "header"]

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
