"""Config is read once from an explicit environment; bad values name the variable."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from shopmesh_platform.config import ConfigError, PlatformConfig, TransportSecurity
from tests.conftest import ConfigFactory


def test_defaults_come_from_the_mesh_declaration() -> None:
    config = PlatformConfig.from_env("orders", {"MESH_TLS": "off"})
    assert config.grpc_port == 50052
    assert config.metrics_port == 51052
    assert config.bind_host == "127.0.0.1"
    assert config.transport is TransportSecurity.OFF
    assert config.otlp_endpoint is None


def test_mutual_tls_is_the_default_and_needs_the_certificate_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="SHOPMESH_TLS_CERT must name a PEM file when MESH_TLS=on"):
        PlatformConfig.from_env("orders", {})
    files = {name: tmp_path / f"{name}.pem" for name in ("cert", "key", "ca")}
    for path in files.values():
        path.write_bytes(b"pem")
    env = {f"SHOPMESH_TLS_{name.upper()}": str(path) for name, path in files.items()}
    config = PlatformConfig.from_env("orders", env)
    assert config.transport is TransportSecurity.ON
    assert config.tls is not None and config.tls.ca == b"pem"
    with pytest.raises(ConfigError, match="SHOPMESH_TLS_KEY="):
        PlatformConfig.from_env("orders", {**env, "SHOPMESH_TLS_KEY": str(tmp_path / "missing.pem")})


def test_overrides_are_applied() -> None:
    config = PlatformConfig.from_env(
        "users",
        {
            "MESH_TLS": "off",
            "SHOPMESH_GRPC_PORT": "6001",
            "SHOPMESH_DRAIN_GRACE_SECONDS": "2.5",
            "SHOPMESH_LOG_LEVEL": "DEBUG",
            "SHOPMESH_OUTBOX_POLL_SECONDS": "0.05",
        },
    )
    assert (config.grpc_port, config.drain_grace_seconds, config.log_level) == (6001, 2.5, "debug")
    assert config.outbox_poll_seconds == 0.05


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("SHOPMESH_GRPC_PORT", "fifty", "SHOPMESH_GRPC_PORT='fifty' is not an integer"),
        ("SHOPMESH_GRPC_PORT", "70000", "SHOPMESH_GRPC_PORT=70000 is out of range"),
        ("SHOPMESH_DRAIN_GRACE_SECONDS", "soon", "SHOPMESH_DRAIN_GRACE_SECONDS='soon' is not a number"),
        ("SHOPMESH_LOG_LEVEL", "loud", "SHOPMESH_LOG_LEVEL='loud' must be one of"),
        ("MESH_TLS", "maybe", "MESH_TLS='maybe' must be one of"),
        ("SHOPMESH_BIND_HOST", "  ", "SHOPMESH_BIND_HOST must not be empty"),
        ("SHOPMESH_OUTBOX_POLL_SECONDS", "0", "SHOPMESH_OUTBOX_POLL_SECONDS=0.0 is out of range"),
    ],
)
def test_bad_value_names_the_variable(variable: str, value: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected.replace("(", r"\(")):
        PlatformConfig.from_env("users", {"MESH_TLS": "off", variable: value})


def test_unknown_service_is_refused() -> None:
    with pytest.raises(ConfigError, match="'billing' is not in the mesh declaration"):
        PlatformConfig.from_env("billing", {"MESH_TLS": "off"})


def test_missing_mesh_file_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="SHOPMESH_MESH_FILE: cannot read"):
        PlatformConfig.from_env("users", {"SHOPMESH_MESH_FILE": str(tmp_path / "absent.yaml")})


def test_bad_mesh_entry_is_named(make_config: ConfigFactory, mesh_document: dict[str, Any]) -> None:
    mesh_document["services"]["users"]["methods"]["Login"]["access"] = "anyone"
    with pytest.raises(ConfigError, match="services.users.methods.Login.access: 'anyone' is not one of"):
        make_config("users", mesh=mesh_document)


def test_config_is_frozen() -> None:
    config = PlatformConfig.from_env("users", {"MESH_TLS": "off"})
    with pytest.raises(AttributeError):
        config.grpc_port = 1  # type: ignore[misc]


def test_service_addresses_default_to_declared_ports_and_can_be_overridden() -> None:
    config = PlatformConfig.from_env("orders", {"MESH_TLS": "off", "SHOPMESH_ADDRESS_INVENTORY": "127.0.0.1:61234"})
    assert config.address_of("inventory") == "127.0.0.1:61234"
    assert config.address_of("users") == "127.0.0.1:50051"


def test_plaintext_modes_are_explicit_and_need_no_certificates() -> None:
    assert PlatformConfig.from_env("orders", {"MESH_TLS": "sidecar"}).transport is TransportSecurity.SIDECAR
    off = PlatformConfig.from_env("orders", {"MESH_TLS": "OFF"})
    assert off.transport is TransportSecurity.OFF and off.tls is None
