"""Settings read from the environment once, at start, into frozen dataclasses.

Each service builds its config with `PlatformConfig.from_env(service_name)` and
passes it down; nothing reads `os.environ` after that. A bad value stops the
process at start with a ConfigError naming the variable.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from shopmesh_platform.events.topics import DEFAULT_TOPICS_FILE
from shopmesh_platform.mesh import DEFAULT_MESH_FILE, MeshDeclaration, MeshDeclarationError, load_mesh


class ConfigError(ValueError):
    """A setting is missing or invalid; the message names the variable."""


class TransportSecurity(enum.Enum):
    """How services talk to each other (MESH_TLS). One setting switches the whole mesh."""

    # Mutual TLS with the mesh identities' certificates (the default).
    ON = "on"
    # Plaintext behind an Envoy/Istio sidecar that does mTLS: the caller's identity is
    # the one the local sidecar appended to x-forwarded-client-cert (see transport.py).
    SIDECAR = "sidecar"
    # Plaintext with no caller identity at all: internal methods refuse every call.
    OFF = "off"
    # Both plaintext modes are never chosen silently: they are logged as warnings at start.


@dataclass(frozen=True)
class TlsFiles:
    """This service's certificate and key, and the CA that issued every mesh identity.

    The PEM bytes are what the files held at start (a file that cannot be read
    stops the process); the paths are where renewed ones appear while it runs
    (shopmesh_platform.certificates re-reads them).
    """

    cert: bytes
    key: bytes
    ca: bytes
    cert_file: Path
    key_file: Path
    ca_file: Path

    @classmethod
    def from_env(cls, read: EnvReader) -> TlsFiles:
        def load(variable: str) -> tuple[bytes, Path]:
            path = read.optional(variable)
            if path is None:
                raise ConfigError(f"{variable} must name a PEM file when MESH_TLS=on")
            try:
                return Path(path).read_bytes(), Path(path).absolute()
            except OSError as exc:
                raise ConfigError(f"{variable}={path}: {exc.strerror}") from exc

        cert, cert_file = load("SHOPMESH_TLS_CERT")
        key, key_file = load("SHOPMESH_TLS_KEY")
        ca, ca_file = load("SHOPMESH_TLS_CA")
        return cls(cert, key, ca, cert_file, key_file, ca_file)


class EnvReader:
    """Typed access to an environment mapping with errors that name the variable."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    def string(self, name: str, default: str) -> str:
        value = self._env.get(name, default).strip()
        if not value:
            raise ConfigError(f"{name} must not be empty")
        return value

    def optional(self, name: str) -> str | None:
        value = self._env.get(name, "").strip()
        return value or None

    def integer(self, name: str, default: int, *, minimum: int, maximum: int) -> int:
        raw = self._env.get(name)
        if raw is None or raw.strip() == "":
            return default
        try:
            value = int(raw.strip())
        except ValueError:
            raise ConfigError(f"{name}={raw!r} is not an integer") from None
        if not minimum <= value <= maximum:
            raise ConfigError(f"{name}={value} is out of range {minimum}..{maximum}")
        return value

    def number(self, name: str, default: float, *, minimum: float, maximum: float) -> float:
        raw = self._env.get(name)
        if raw is None or raw.strip() == "":
            return default
        try:
            value = float(raw.strip())
        except ValueError:
            raise ConfigError(f"{name}={raw!r} is not a number") from None
        if not minimum <= value <= maximum:
            raise ConfigError(f"{name}={value} is out of range {minimum}..{maximum}")
        return value

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        value = self._env.get(name, default).strip().lower()
        if value not in choices:
            raise ConfigError(f"{name}={value!r} must be one of: {', '.join(choices)}")
        return value


@dataclass(frozen=True)
class ServerLimits:
    """Transport limits every server applies."""

    max_message_bytes: int
    keepalive_time_ms: int
    keepalive_timeout_ms: int
    max_concurrent_streams: int


@dataclass(frozen=True)
class PlatformConfig:
    """What the platform needs to run one service."""

    service_name: str
    mesh: MeshDeclaration
    bind_host: str
    grpc_port: int
    metrics_port: int
    drain_grace_seconds: float
    drain_delay_seconds: float
    health_probe_interval_seconds: float
    client_deadline_seconds: float
    log_level: str
    otlp_endpoint: str | None
    transport: TransportSecurity
    tls: TlsFiles | None
    limits: ServerLimits
    service_addresses: Mapping[str, str]
    # kafka/topics.yaml (SHOPMESH_TOPICS_FILE): the topics the mesh declaration may name.
    topics_file: Path = DEFAULT_TOPICS_FILE
    # SHOPMESH_REUSE_PORT=on: the gRPC and metrics ports are bound with SO_REUSEPORT, so a
    # replacement process can listen beside this one during a hand-over (the local stack's
    # rolling restart). Off by default: a port already taken is then an error at start.
    reuse_port: bool = False
    # SHOPMESH_PROBE_PORT: the metrics again on a port of this process alone, so the one
    # starting a replacement can tell when *it* serves while both share the ports above.
    probe_port: int | None = None
    # How long an idle outbox relay waits before looking for new events (SHOPMESH_OUTBOX_POLL_SECONDS)
    # when no commit of this process wakes it (events.doorbell): another replica's writes wait for it.
    outbox_poll_seconds: float = 0.2

    def address_of(self, service: str) -> str:
        """host:port of another mesh service (SHOPMESH_ADDRESS_<NAME>, else the declared port)."""
        return self.service_addresses.get(service) or f"127.0.0.1:{self.mesh.service(service).grpc_port}"

    @classmethod
    def from_env(cls, service_name: str, env: Mapping[str, str] | None = None) -> PlatformConfig:
        """Read every setting, failing with the name of the first bad variable.

        Ports default to the mesh declaration's; `0` picks a free port (tests).
        """
        read = EnvReader(os.environ if env is None else env)
        mesh_file = Path(read.string("SHOPMESH_MESH_FILE", str(DEFAULT_MESH_FILE)))
        topics_file = Path(read.string("SHOPMESH_TOPICS_FILE", str(DEFAULT_TOPICS_FILE)))
        try:
            mesh = load_mesh(mesh_file, topics_file)
        except MeshDeclarationError as exc:
            raise ConfigError(f"SHOPMESH_MESH_FILE: {exc}") from exc
        if service_name not in mesh.services:
            raise ConfigError(f"service {service_name!r} is not in the mesh declaration {mesh_file}")
        declared = mesh.services[service_name]
        transport = TransportSecurity(read.choice("MESH_TLS", "on", tuple(t.value for t in TransportSecurity)))
        return cls(
            service_name=service_name,
            mesh=mesh,
            bind_host=read.string("SHOPMESH_BIND_HOST", "127.0.0.1"),
            grpc_port=read.integer("SHOPMESH_GRPC_PORT", declared.grpc_port, minimum=0, maximum=65535),
            metrics_port=read.integer("SHOPMESH_METRICS_PORT", declared.metrics_port, minimum=0, maximum=65535),
            drain_grace_seconds=read.number("SHOPMESH_DRAIN_GRACE_SECONDS", 10.0, minimum=0.0, maximum=300.0),
            drain_delay_seconds=read.number("SHOPMESH_DRAIN_DELAY_SECONDS", 0.0, minimum=0.0, maximum=60.0),
            health_probe_interval_seconds=read.number(
                "SHOPMESH_HEALTH_PROBE_INTERVAL_SECONDS", 1.0, minimum=0.05, maximum=60.0
            ),
            client_deadline_seconds=read.number(
                "SHOPMESH_CLIENT_DEADLINE_SECONDS", mesh.default_timeout_seconds, minimum=0.01, maximum=600.0
            ),
            log_level=read.choice("SHOPMESH_LOG_LEVEL", "info", ("debug", "info", "warning", "error")),
            otlp_endpoint=read.optional("OTEL_EXPORTER_OTLP_ENDPOINT"),
            transport=transport,
            tls=TlsFiles.from_env(read) if transport is TransportSecurity.ON else None,
            limits=ServerLimits(
                max_message_bytes=read.integer(
                    "SHOPMESH_MAX_MESSAGE_BYTES", 4 * 1024 * 1024, minimum=1024, maximum=64 * 1024 * 1024
                ),
                keepalive_time_ms=read.integer("SHOPMESH_KEEPALIVE_TIME_MS", 30_000, minimum=1_000, maximum=3_600_000),
                keepalive_timeout_ms=read.integer(
                    "SHOPMESH_KEEPALIVE_TIMEOUT_MS", 10_000, minimum=1_000, maximum=600_000
                ),
                max_concurrent_streams=read.integer("SHOPMESH_MAX_CONCURRENT_STREAMS", 256, minimum=1, maximum=100_000),
            ),
            service_addresses={
                name: address
                for name in mesh.services
                if (address := read.optional(f"SHOPMESH_ADDRESS_{name.upper()}")) is not None
            },
            topics_file=topics_file,
            reuse_port=read.choice("SHOPMESH_REUSE_PORT", "off", ("on", "off")) == "on",
            probe_port=read.integer("SHOPMESH_PROBE_PORT", -1, minimum=0, maximum=65535)
            if read.optional("SHOPMESH_PROBE_PORT") is not None
            else None,
            outbox_poll_seconds=read.number("SHOPMESH_OUTBOX_POLL_SECONDS", 0.2, minimum=0.01, maximum=10.0),
        )
