"""Kafka client settings: TLS client authentication from Strimzi's Secrets, all or nothing."""

from __future__ import annotations

import pytest

from shopmesh_platform.config import ConfigError
from shopmesh_platform.kafka import KafkaConfig

BOOTSTRAP = {"SHOPMESH_KAFKA_BOOTSTRAP": "kafka:9093"}
TLS = {
    "SHOPMESH_KAFKA_CA_FILE": "/etc/shopmesh/kafka/ca/ca.crt",
    "SHOPMESH_KAFKA_CERT_FILE": "/etc/shopmesh/kafka/user/user.crt",
    "SHOPMESH_KAFKA_KEY_FILE": "/etc/shopmesh/kafka/user/user.key",
}


def test_plaintext_without_tls_files() -> None:
    config = KafkaConfig.from_env(BOOTSTRAP)
    assert config.tls is None
    assert config.client_options() == {}


def test_tls_files_are_read() -> None:
    config = KafkaConfig.from_env(BOOTSTRAP | TLS)
    assert config.tls is not None
    assert (config.tls.ca_file, config.tls.cert_file, config.tls.key_file) == tuple(TLS.values())


def test_half_a_tls_setup_is_refused() -> None:
    partial = {k: v for k, v in TLS.items() if k != "SHOPMESH_KAFKA_KEY_FILE"}
    with pytest.raises(ConfigError, match="SHOPMESH_KAFKA_KEY_FILE must be set too"):
        KafkaConfig.from_env(BOOTSTRAP | partial)


def test_missing_tls_file_fails_when_the_client_is_built() -> None:
    config = KafkaConfig.from_env(BOOTSTRAP | {k: f"/nonexistent/{k}" for k in TLS})
    with pytest.raises(OSError):
        config.client_options()
