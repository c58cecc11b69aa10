"""One stack instance: start everything in order, report, stop, wipe.

Start order: PostgreSQL (then databases and migrations), Kafka (then topics),
FerretDB, localstripe, Mailpit, Jaeger (the services export traces to it), the services
of mesh/mesh.yaml in its order, and Envoy last. Each service gets the database its
declaration names (`storage`). Each is awaited with a
deadline (services: health SERVING, and `up` also waits until their revocation
deny-lists are replayed, so user calls are answered when it returns); a failure
names the component and its log file. `down` stops in reverse order, by pid, and
leaves the data; `clean` also deletes the data.

`roll` replaces a running service's process without refusing a call: the
successor starts on the same ports (SO_REUSEPORT; the kernel spreads new
connections over both), and once it serves on its own (health SERVING and its
deny-list replayed, read on a probe port of its own) the old one gets SIGTERM
and drains (health NOT_SERVING, in-flight calls finish, listeners close). Calls
that race the hand-over are retried by the edge and by the services' channels
where that is safe (see shopmesh_edge.render and shopmesh_platform.channel).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from shopmesh_platform.mesh import StorageKind
from shopmesh_stack.components import (
    CertificateRenewer,
    Component,
    Edge,
    FerretDB,
    Jaeger,
    Kafka,
    LocalStripe,
    Mailpit,
    Postgres,
    Service,
    free_port,
)
from shopmesh_stack.install import Installed, install_all
from shopmesh_stack.pki import LocalCA
from shopmesh_stack.procs import Exit
from shopmesh_stack.settings import StackSettings
from shopmesh_stack.waiting import StartError, wait_ready
from shopmesh_stack.wiring import storage_env

# How long the old process of a roll may take to drain (its grace period, and then some).
DRAIN_TIMEOUT_SECONDS = 60.0


@dataclass(frozen=True)
class Handover:
    """One roll: the process replaced, the one now serving, and how the old one ended."""

    service: str
    old: Exit
    new_pid: int


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    running: bool
    pid: int | None
    port: int
    log_file: Path


class Stack:
    """The components of one instance, in start order."""

    def __init__(self, settings: StackSettings, installed: Installed | None = None) -> None:
        self.settings = settings
        self.installed = installed or install_all(settings.cache_dir)
        self.postgres = Postgres(settings, self.installed)
        self.kafka = Kafka(settings, self.installed)
        self.ferretdb = FerretDB(settings, self.installed, self.postgres)
        self.localstripe = LocalStripe(settings, self.installed)
        self.mailpit = Mailpit(settings, self.installed)
        self.jaeger = Jaeger(settings, self.installed)
        shared_env = {
            "SHOPMESH_KAFKA_BOOTSTRAP": self.kafka.bootstrap,
            "SHOPMESH_STRIPE_API_BASE": self.localstripe.api_base,
            "SHOPMESH_STRIPE_API_KEY": self.localstripe.api_key,
            "SHOPMESH_STRIPE_WEBHOOK_SECRET": self.localstripe.webhook_secret,
            "SHOPMESH_JWT_ISSUER": settings.jwt_issuer,
            "SHOPMESH_JWT_AUDIENCE": settings.jwt_audience,
            "SHOPMESH_JWKS_REFRESH_SECONDS": f"{settings.jwks_refresh_seconds:g}",
            "OTEL_EXPORTER_OTLP_ENDPOINT": self.jaeger.otlp_endpoint,
            # Spans go out every second (the SDK's default is 5 s): `make trace` right after a request is complete.
            "OTEL_BSP_SCHEDULE_DELAY": "1000",
        }
        self.services = {
            name: Service(
                settings,
                self.installed,
                name,
                {**shared_env, **self._own_env(name)},
                documents=self.ferretdb if self._keeps_documents(name) else None,
            )
            for name in settings.services
        }
        self.edge = Edge(settings, self.installed)
        self.renewer = CertificateRenewer(settings, self.installed)

    def _keeps_documents(self, service: str) -> bool:
        storage = self.settings.mesh.service(service).storage
        return storage is not None and storage.kind is StorageKind.MONGO

    def _own_env(self, service: str) -> dict[str, str]:
        """Its declared database, a directory of its own for signing keys, the SMTP server.

        Only the token issuer reads SHOPMESH_JWT_KEY_DIR and only a mailing service
        the SMTP settings; the others ignore them, so no service is singled out here.
        """
        database = storage_env(
            self.settings.mesh.service(service), postgres_dsn=self.postgres.dsn, mongo_url=self.ferretdb.url
        )
        return {
            **database,
            "SHOPMESH_JWT_KEY_DIR": str(self.settings.service_dir(service) / "jwt-keys"),
            # Only a service that sends mail reads these (the local SMTP server, Mailpit).
            "SHOPMESH_SMTP_HOST": "127.0.0.1",
            "SHOPMESH_SMTP_PORT": str(self.settings.ports.mailpit_smtp),
        }

    @property
    def components(self) -> list[Component]:
        # The renewer first: the certificates stay current whatever else is slow to start.
        return [
            self.renewer,
            self.postgres,
            self.kafka,
            self.ferretdb,
            self.localstripe,
            self.mailpit,
            self.jaeger,
            *self.services.values(),
            self.edge,
        ]

    def start(self, component: Component) -> None:
        process = component.process
        if process.running():
            print(f"  {component.name:<14} already running (pid {process.pid()})", flush=True)
            return
        component.prepare()
        pid = process.start()
        print(f"  {component.name:<14} starting (pid {pid}, port {component.port})", flush=True)
        wait_ready(component.name, component.ready, process, component.start_timeout)
        component.provision()

    def up(self) -> None:
        for directory in (self.settings.data_dir, self.settings.log_dir, self.settings.run_dir):
            directory.mkdir(parents=True, exist_ok=True)
        # PostgreSQL runs as its own user and must be able to reach its data dir.
        self.settings.data_dir.chmod(0o755)
        self._link_tools()
        self.issue_certificates()
        # Running services and Envoy pick reissued certificates up by themselves: no restart.
        for component in self.components:
            if component is self.renewer and not self.settings.mesh_tls:
                continue
            self.start(component)
        for service in self.services.values():
            wait_ready(
                f"{service.name} revocations", service.revocations_loaded, service.process, service.start_timeout
            )

    def issue_certificates(self) -> list[str]:
        """(Re)issue what is missing or expiring; returns the identities issued.

        The CA key stays in the data directory. The renewer keeps them current afterwards.
        """
        if not self.settings.mesh_tls:
            print("  WARNING: MESH_TLS=off: services talk plaintext (only for running behind sidecars)", flush=True)
            return []
        mesh = self.settings.mesh
        authority = LocalCA(self.settings.pki_dir, mesh.trust_domain, mesh.namespace, self.settings.cert_lifetime)
        with authority.issuing():
            issued = authority.ensure(mesh.identities)
        if issued:
            print(f"  certificates   issued for {', '.join(issued)} ({mesh.trust_domain})", flush=True)
        return issued

    @property
    def grpcurl(self) -> Path:
        """grpcurl, linked into the data directory so the printed commands stay short."""
        return self.settings.data_dir / "bin" / "grpcurl"

    def _link_tools(self) -> None:
        self.grpcurl.parent.mkdir(exist_ok=True)
        self.grpcurl.unlink(missing_ok=True)
        self.grpcurl.symlink_to(self.installed.grpcurl)

    def roll(self, name: str) -> Handover:
        """Replace the running process of service `name` (see the module docstring)."""
        if name not in self.services:
            raise StartError(f"no service {name!r}; one of: {', '.join(self.services)}")
        service = self.services[name]
        if not service.process.running():
            raise StartError(f"{name} is not running: nothing to replace (make up)")
        probe_port = free_port()
        successor = service.successor(probe_port)
        new_pid = successor.start()
        print(f"  {name:<14} successor starting (pid {new_pid}, port {service.port})", flush=True)
        try:
            wait_ready(f"{name} successor", lambda: service.serving_alone(probe_port), successor, service.start_timeout)
        except StartError:
            successor.stop()
            raise
        old = service.process.end(timeout=DRAIN_TIMEOUT_SECONDS)
        # The successor is the service now: `status`, `down` and the next roll find it by the usual pid file.
        successor.spec.pid_file.replace(service.process.spec.pid_file)
        if old is None:
            raise StartError(f"{name}: the old process exited during the hand-over; pid {new_pid} serves")
        if not old.in_time:
            raise StartError(f"{name}: pid {old.pid} did not drain within {DRAIN_TIMEOUT_SECONDS:.0f}s and was killed")
        print(f"  {name:<14} pid {old.pid} drained and exited; pid {new_pid} serves", flush=True)
        return Handover(name, old, new_pid)

    def stop(self, component: Component) -> bool:
        return component.process.stop(sig=component.stop_signal)

    def down(self) -> None:
        for component in reversed(self.components):
            if self.stop(component):
                print(f"  {component.name:<14} stopped", flush=True)

    def status(self) -> list[ComponentStatus]:
        rows = []
        for component in self.components:
            process = component.process
            pid = process.pid()
            rows.append(ComponentStatus(component.name, pid is not None, pid, component.port, process.spec.log_file))
        return rows

    def clean(self) -> None:
        self.down()
        shutil.rmtree(self.settings.data_dir, ignore_errors=True)
