"""Where a stack instance lives and which ports it uses.

`make up` uses `StackSettings.from_env()`: the data directory `.stack/` in the
clone (SHOPMESH_DATA_DIR), the install cache `~/.cache/shopmesh` (SHOPMESH_CACHE),
the mesh declaration (SHOPMESH_MESH_FILE, default mesh/mesh.yaml), the topic
declaration it names topics of (SHOPMESH_TOPICS_FILE, default kafka/topics.yaml) and the default
ports of DESIGN §2, each overridable (SHOPMESH_PORT_<NAME>). The services, their
ports and their start order are the mesh declaration's: nothing here names one.
Tests use `StackSettings.isolated()`: a temporary data directory, free ports and
their own service settings, so they never collide with a running dev stack; its
processes die with the test run (`die_with_parent`).
"""

from __future__ import annotations

import datetime as dt
import functools
import os
import socket
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from shopmesh_platform.config import ConfigError, EnvReader
from shopmesh_platform.events.topics import DEFAULT_TOPICS_FILE
from shopmesh_platform.mesh import DEFAULT_MESH_FILE, MeshDeclaration, MeshDeclarationError, load_mesh
from shopmesh_stack.pki import IdentityFiles

REPO = Path(__file__).resolve().parents[2]
# Renewal at two thirds of the lifetime leaves a third to renew and reload in.
MIN_CERT_LIFETIME_SECONDS = 15
PORT_VARIABLE_PREFIX = "SHOPMESH_PORT_"


def service_order(mesh: MeshDeclaration) -> tuple[str, ...]:
    """The services in start order: the order mesh.yaml declares them in.

    The token issuer is declared first, so its JWKS is there when the others start
    (they would wait for it anyway: verification fails closed until it answers).
    """
    return tuple(mesh.services)


def service_port_variables(service: str) -> tuple[str, str]:
    """`SHOPMESH_PORT_<SERVICE>` and `SHOPMESH_PORT_<SERVICE>_METRICS` (a '-' becomes '_')."""
    stem = PORT_VARIABLE_PREFIX + service.upper().replace("-", "_")
    return stem, f"{stem}_METRICS"


@dataclass(frozen=True)
class ServicePorts:
    """A service's gRPC port and its Prometheus metrics port."""

    grpc: int
    metrics: int


@dataclass(frozen=True)
class Ports:
    """Every port an instance binds, all on 127.0.0.1.

    The components' ports are fields; the services' come from the mesh declaration
    (`services`, in start order), with the ports it declares as defaults.
    """

    services: Mapping[str, ServicePorts]
    edge: int = 8080
    # The edge's GET /ready and GET /stats/prometheus (Envoy's admin itself is a Unix socket).
    edge_metrics: int = 9901
    postgres: int = 55432
    ferretdb: int = 27017
    kafka: int = 9092
    kafka_controller: int = 9093
    localstripe: int = 8420
    # Mailpit (the local SMTP server): SMTP, and its web UI and HTTP API.
    mailpit_smtp: int = 1025
    mailpit_http: int = 8025
    # Jaeger: OTLP in (gRPC and HTTP, the collector's 4317/4318) and its query API (HTTP, gRPC).
    jaeger_otlp: int = 4317
    jaeger_otlp_http: int = 4318
    jaeger_query: int = 16686
    jaeger_query_grpc: int = 16685

    @staticmethod
    def component_names() -> tuple[str, ...]:
        """The fields naming a component's port (everything but `services`)."""
        return tuple(f.name for f in fields(Ports) if f.name != "services")

    def grpc(self, service: str) -> int:
        return self._of(service).grpc

    def metrics(self, service: str) -> int:
        return self._of(service).metrics

    def _of(self, service: str) -> ServicePorts:
        try:
            return self.services[service]
        except KeyError:
            raise KeyError(f"no ports for {service!r}: it is not a service of this instance's mesh") from None

    def all_ports(self) -> Iterator[int]:
        for name in self.component_names():
            yield getattr(self, name)
        for ports in self.services.values():
            yield from (ports.grpc, ports.metrics)

    def variables(self) -> dict[str, str]:
        """The `SHOPMESH_PORT_<NAME>` variables that select these ports, as `from_env` reads them."""
        env = {f"{PORT_VARIABLE_PREFIX}{name.upper()}": str(getattr(self, name)) for name in self.component_names()}
        for service, ports in self.services.items():
            grpc_variable, metrics_variable = service_port_variables(service)
            env[grpc_variable] = str(ports.grpc)
            env[metrics_variable] = str(ports.metrics)
        return env

    @classmethod
    def declared(cls, mesh: MeshDeclaration) -> Ports:
        """The defaults: DESIGN §2's component ports and the ports mesh.yaml declares per service."""
        return cls({name: ServicePorts(s.grpc_port, s.metrics_port) for name, s in mesh.services.items()})

    @classmethod
    def from_env(cls, env: Mapping[str, str], mesh: MeshDeclaration) -> Ports:
        _check_variables_unique(mesh)
        read = EnvReader(env)
        defaults = cls.declared(mesh)

        def port(variable: str, default: int) -> int:
            return read.integer(variable, default, minimum=1, maximum=65535)

        services = {}
        for name, declared in defaults.services.items():
            grpc_variable, metrics_variable = service_port_variables(name)
            services[name] = ServicePorts(port(grpc_variable, declared.grpc), port(metrics_variable, declared.metrics))
        components = {
            name: port(f"{PORT_VARIABLE_PREFIX}{name.upper()}", getattr(defaults, name))
            for name in cls.component_names()
        }
        return cls(services, **components)

    @classmethod
    def free(cls, mesh: MeshDeclaration) -> Ports:
        """Ports the kernel says are free right now (held open together, so all differ)."""
        sockets = []
        try:
            for _ in range(len(cls.component_names()) + 2 * len(mesh.services)):
                s = socket.socket()
                s.bind(("127.0.0.1", 0))
                sockets.append(s)
            numbers = iter(s.getsockname()[1] for s in sockets)
            components = {name: next(numbers) for name in cls.component_names()}
            services = {name: ServicePorts(next(numbers), next(numbers)) for name in mesh.services}
            return cls(services, **components)
        finally:
            for s in sockets:
                s.close()


def _check_variables_unique(mesh: MeshDeclaration) -> None:
    """No service's port variable may also select a component's (a service named `kafka`)."""
    seen = {f"{PORT_VARIABLE_PREFIX}{name.upper()}": f"the {name} port" for name in Ports.component_names()}
    for service in mesh.services:
        for variable in service_port_variables(service):
            if variable in seen:
                raise ConfigError(f"{variable} would select both {seen[variable]} and service {service!r}'s port")
            seen[variable] = f"service {service!r}'s port"


def load_stack_mesh(mesh_file: Path, topics_file: Path = DEFAULT_TOPICS_FILE) -> MeshDeclaration:
    try:
        return load_mesh(mesh_file, topics_file)
    except MeshDeclarationError as exc:
        raise ConfigError(f"SHOPMESH_MESH_FILE: {exc}") from exc


@dataclass(frozen=True)
class StackSettings:
    """One stack instance."""

    data_dir: Path
    cache_dir: Path
    ports: Ports
    # The mesh declaration the instance runs (its services, their storage and topics).
    mesh_file: Path = DEFAULT_MESH_FILE
    # The topics the instance creates and its declaration may name.
    topics_file: Path = DEFAULT_TOPICS_FILE
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

    @functools.cached_property
    def mesh(self) -> MeshDeclaration:
        """The declaration of `mesh_file`, read once per settings object."""
        return load_stack_mesh(self.mesh_file, self.topics_file)

    @property
    def services(self) -> tuple[str, ...]:
        """The mesh's services in start order."""
        return service_order(self.mesh)

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

    def service_dir(self, service: str) -> Path:
        """A service's own files in the instance (e.g. the token issuer's signing keys)."""
        return self.data_dir / service

    @property
    def edge_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.edge}"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> StackSettings:
        env = os.environ if env is None else env
        read = EnvReader(env)
        mesh_file = Path(read.string("SHOPMESH_MESH_FILE", str(DEFAULT_MESH_FILE))).resolve()
        topics_file = Path(read.string("SHOPMESH_TOPICS_FILE", str(DEFAULT_TOPICS_FILE))).resolve()
        mesh = load_stack_mesh(mesh_file, topics_file)
        return cls(
            data_dir=Path(read.string("SHOPMESH_DATA_DIR", str(REPO / ".stack"))).resolve(),
            cache_dir=Path(read.string("SHOPMESH_CACHE", str(Path.home() / ".cache" / "shopmesh"))).resolve(),
            ports=Ports.from_env(env, mesh),
            mesh_file=mesh_file,
            topics_file=topics_file,
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
        mesh_file: Path | None = None,
        topics_file: Path | None = None,
    ) -> StackSettings:
        base = cls.from_env()
        mesh_file = base.mesh_file if mesh_file is None else mesh_file.resolve()
        topics_file = base.topics_file if topics_file is None else topics_file.resolve()
        return replace(
            base,
            data_dir=data_dir.resolve(),
            mesh_file=mesh_file,
            topics_file=topics_file,
            ports=Ports.free(load_stack_mesh(mesh_file, topics_file)),
            service_env=dict(service_env or {}),
            jwks_refresh_seconds=base.jwks_refresh_seconds if jwks_refresh_seconds is None else jwks_refresh_seconds,
            edge_rate_limits=edge_rate_limits,
            edge_cors_origins=edge_cors_origins,
            die_with_parent=True,
        )
