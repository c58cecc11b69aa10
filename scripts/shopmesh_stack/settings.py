"""Where a stack instance lives and which ports it uses.

`make up` uses `StackSettings.from_env()`: the data directory `.stack/` in the
clone (SHOPMESH_DATA_DIR), the install cache `~/.cache/shopmesh` (SHOPMESH_CACHE)
and the default ports of DESIGN §2, each overridable (SHOPMESH_PORT_<NAME>).
Tests use `StackSettings.isolated()`: a temporary data directory, free ports and
their own service settings, so they never collide with a running dev stack; its
processes die with the test run (`die_with_parent`).
"""

from __future__ import annotations

import datetime as dt
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from shopmesh_platform.config import EnvReader
from shopmesh_stack.pki import IdentityFiles

REPO = Path(__file__).resolve().parents[2]
# The services in start order (their ports are fields of Ports).
SERVICES_ORDER = ("users", "orders", "payments", "inventory", "notifications")
# Renewal at two thirds of the lifetime leaves a third to renew and reload in.
MIN_CERT_LIFETIME_SECONDS = 15


@dataclass(frozen=True)
class Ports:
    """Every port an instance binds, all on 127.0.0.1."""

    edge: int = 8080
    # The edge's GET /ready and GET /stats/prometheus (Envoy's admin itself is a Unix socket).
    edge_metrics: int = 9901
    users: int = 50051
    orders: int = 50052
    payments: int = 50053
    inventory: int = 50054
    notifications: int = 50055
    users_metrics: int = 51051
    orders_metrics: int = 51052
    payments_metrics: int = 51053
    inventory_metrics: int = 51054
    notifications_metrics: int = 51055
    postgres: int = 55432
    ferretdb: int = 27017
    kafka: int = 9092
    kafka_controller: int = 9093
    localstripe: int = 8420
    # Jaeger: OTLP in (gRPC and HTTP, the collector's 4317/4318) and its query API (HTTP, gRPC).
    jaeger_otlp: int = 4317
    jaeger_otlp_http: int = 4318
    jaeger_query: int = 16686
    jaeger_query_grpc: int = 16685

    def grpc(self, service: str) -> int:
        return int(getattr(self, service))

    def metrics(self, service: str) -> int:
        return int(getattr(self, f"{service}_metrics"))

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Ports:
        read = EnvReader(env)
        defaults = cls()
        return cls(
            **{
                f.name: read.integer(
                    f"SHOPMESH_PORT_{f.name.upper()}", getattr(defaults, f.name), minimum=1, maximum=65535
                )
                for f in fields(cls)
            }
        )

    @classmethod
    def free(cls) -> Ports:
        """Ports the kernel says are free right now (held open together, so all differ)."""
        sockets = []
        try:
            for _ in fields(cls):
                s = socket.socket()
                s.bind(("127.0.0.1", 0))
                sockets.append(s)
            return cls(*(s.getsockname()[1] for s in sockets))
        finally:
            for s in sockets:
                s.close()


@dataclass(frozen=True)
class StackSettings:
    """One stack instance."""

    data_dir: Path
    cache_dir: Path
    ports: Ports
    # Extra settings for every service of this instance (rate budgets, expiries...).
    service_env: Mapping[str, str] = field(default_factory=dict)
    jwt_issuer: str = "shopmesh-users"
    jwt_audience: str = "shopmesh"
    # How long the edge and the services trust a fetched JWKS (SHOPMESH_JWKS_REFRESH_SECONDS).
    jwks_refresh_seconds: float = 300.0
    # Edge overrides (see mesh/mesh.yaml `edge:`): JSON budgets and extra CORS origins.
    edge_rate_limits: str = ""
    edge_cors_origins: str = ""
    # The edge profile of mesh/mesh.yaml (developer: health and reflection at the edge).
    edge_profile: str = "developer"
    # Mutual TLS between every component of the mesh (MESH_TLS=off turns it off, loudly).
    mesh_tls: bool = True
    cert_lifetime_hours: int = 24
    # The processes die with the one that started them (a test run); `make up`'s outlive it.
    die_with_parent: bool = False
    # When set, overrides the hours: short lifetimes to watch renewal happen (tests).
    cert_lifetime_seconds: int | None = None

    @property
    def cert_lifetime(self) -> dt.timedelta:
        """How long the certificates the stack issues are valid."""
        if self.cert_lifetime_seconds is not None:
            return dt.timedelta(seconds=self.cert_lifetime_seconds)
        return dt.timedelta(hours=self.cert_lifetime_hours)

    @property
    def pki_dir(self) -> Path:
        return self.data_dir / "pki"

    def tls_files(self, identity: str) -> IdentityFiles | None:
        """The certificate files of a mesh identity, or None when mesh TLS is off."""
        if not self.mesh_tls:
            return None
        return IdentityFiles(
            self.pki_dir / f"{identity}.pem", self.pki_dir / f"{identity}.key", self.pki_dir / "ca.pem"
        )

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"

    @property
    def run_dir(self) -> Path:
        return self.data_dir / "run"

    @property
    def edge_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.edge}"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> StackSettings:
        env = os.environ if env is None else env
        read = EnvReader(env)
        return cls(
            data_dir=Path(read.string("SHOPMESH_DATA_DIR", str(REPO / ".stack"))).resolve(),
            cache_dir=Path(read.string("SHOPMESH_CACHE", str(Path.home() / ".cache" / "shopmesh"))).resolve(),
            ports=Ports.from_env(env),
            jwks_refresh_seconds=read.number("SHOPMESH_JWKS_REFRESH_SECONDS", 300.0, minimum=1.0, maximum=24 * 3600),
            edge_rate_limits=env.get("SHOPMESH_EDGE_RATE_LIMITS", ""),
            edge_cors_origins=env.get("SHOPMESH_EDGE_CORS_ORIGINS", ""),
            edge_profile=read.choice("SHOPMESH_EDGE_PROFILE", "developer", ("developer", "production")),
            mesh_tls=read.choice("MESH_TLS", "on", ("on", "off")) == "on",
            cert_lifetime_hours=read.integer("SHOPMESH_CERT_LIFETIME_HOURS", 24, minimum=2, maximum=24 * 365),
            cert_lifetime_seconds=read.integer(
                "SHOPMESH_CERT_LIFETIME_SECONDS", 0, minimum=MIN_CERT_LIFETIME_SECONDS, maximum=365 * 24 * 3600
            )
            if read.optional("SHOPMESH_CERT_LIFETIME_SECONDS")
            else None,
        )

    @classmethod
    def isolated(
        cls,
        data_dir: Path,
        service_env: Mapping[str, str] | None = None,
        *,
        edge_rate_limits: str = "",
        edge_cors_origins: str = "",
        jwks_refresh_seconds: float | None = None,
    ) -> StackSettings:
        base = cls.from_env()
        return replace(
            base,
            data_dir=data_dir.resolve(),
            ports=Ports.free(),
            service_env=dict(service_env or {}),
            jwks_refresh_seconds=base.jwks_refresh_seconds if jwks_refresh_seconds is None else jwks_refresh_seconds,
            edge_rate_limits=edge_rate_limits,
            edge_cors_origins=edge_cors_origins,
            die_with_parent=True,
        )
