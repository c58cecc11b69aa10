"""The stack's components: how each is prepared, started, probed and set up.

Each component has a `process` (a ManagedProcess with its log and pid file), a
`prepare()` run before start (data directories, rendered config), a `ready()`
probe, and a `provision()` run once it is ready (databases, migrations, topics).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from grpc_health.v1 import health_pb2

from shopmesh_platform.migrations import migrate
from shopmesh_stack.admin_socket import admin_get
from shopmesh_stack.channels import health_status
from shopmesh_stack.install import Installed
from shopmesh_stack.procs import ManagedProcess, ProcessSpec
from shopmesh_stack.settings import REPO, StackSettings
from shopmesh_stack.waiting import StartError
from shopmesh_stack.wiring import FERRETDB_DATABASE, address_variable, postgres_databases

if TYPE_CHECKING:
    from shopmesh_edge.policy import EdgePolicy
    from shopmesh_edge.render import EdgeSettings

LOCALSTRIPE_API_KEY = "sk_test_shopmesh_local"
# Demo data per service (`<service>.sql`), loaded after the migrations by the local stack only.
DEMO_DATA = Path(__file__).with_name("data")
# The secret localstripe signs webhooks with (local only; production's comes from Stripe).
LOCALSTRIPE_WEBHOOK_SECRET = "whsec_shopmesh_local"
LOCALSTRIPE_WEBHOOK_ID = "shopmesh"
WEBHOOK_PATH = "/api/v1/webhooks/stripe"


def port_open(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def port_free(port: int) -> bool:
    """Whether nothing listens on 127.0.0.1:port (a listener with SO_REUSEPORT too)."""
    with socket.socket() as probe:
        # Connections of an earlier process in TIME_WAIT do not count, listeners do.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def scrape(port: int) -> dict[str, float]:
    """The unlabelled samples of a Prometheus endpoint on 127.0.0.1:port."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
        lines = response.read().decode().splitlines()
    return {
        name: float(value)
        for name, value in (line.split()[:2] for line in lines if line[:1].isalpha() and "{" not in line)
    }


class Component:
    """Base: a named process with a log file and a pid file in the instance's dirs."""

    name: str = ""
    start_timeout: float = 60.0
    stop_signal: signal.Signals = signal.SIGTERM

    def __init__(self, settings: StackSettings, installed: Installed) -> None:
        self.settings = settings
        self.installed = installed

    @property
    def port(self) -> int:
        raise NotImplementedError

    def argv(self) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/root"),
            "LANG": "C.UTF-8",
        }

    user: str | None = None

    @property
    def process(self) -> ManagedProcess:
        return ManagedProcess(
            ProcessSpec(
                name=self.name,
                argv=self.argv(),
                env=self.env(),
                log_file=self.settings.log_dir / f"{self.name}.log",
                pid_file=self.settings.run_dir / f"{self.name}.pid",
                cwd=self.settings.data_dir,
                user=self.user,
                die_with_parent=self.settings.die_with_parent,
            )
        )

    @property
    def identity(self) -> str | None:
        """The mesh identity whose certificate the component uses, if any."""
        return None

    def prepare(self) -> None:
        """Before start: create data directories, render configuration."""

    def ready(self) -> bool:
        return port_open(self.port)

    def provision(self) -> None:
        """After the first successful readiness probe: databases, topics."""


class CertificateRenewer(Component):
    """Renews the mesh certificates while the stack runs (shopmesh_stack.renewer); listens on no port."""

    name = "renewer"
    start_timeout = 30.0

    @property
    def port(self) -> int:
        return 0

    @property
    def heartbeat(self) -> Path:
        return self.settings.run_dir / f"{self.name}.heartbeat"

    def argv(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "shopmesh_stack.renewer",
            "--pki-dir",
            str(self.settings.pki_dir),
            "--lifetime-seconds",
            str(int(self.settings.cert_lifetime.total_seconds())),
            "--heartbeat",
            str(self.heartbeat),
        ]

    def env(self) -> dict[str, str]:
        return {**super().env(), "PYTHONUNBUFFERED": "1"}

    def prepare(self) -> None:
        self.heartbeat.unlink(missing_ok=True)

    def ready(self) -> bool:
        # Ready once it has completed a round.
        return self.heartbeat.exists()


class Postgres(Component):
    """A PostgreSQL cluster of the stack's own (never the system cluster)."""

    name = "postgres"
    # SIGTERM is PostgreSQL's "smart" shutdown, which waits for every client to
    # disconnect; SIGINT ("fast") rolls back open transactions and exits.
    stop_signal = signal.SIGINT

    @property
    def port(self) -> int:
        return self.settings.ports.postgres

    @property
    def data(self) -> Path:
        return self.settings.data_dir / "postgres"

    @property
    def user(self) -> str | None:  # type: ignore[override]
        # PostgreSQL refuses to run as root; the Debian package's user runs it.
        return "postgres" if os.geteuid() == 0 else None

    def dsn(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def argv(self) -> list[str]:
        return [
            str(self.installed.postgres_bin / "postgres"),
            "-D",
            str(self.data),
            "-p",
            str(self.port),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "unix_socket_directories=",
            "-c",
            "max_connections=200",
        ]

    def prepare(self) -> None:
        if (self.data / "PG_VERSION").exists():
            return
        self.data.mkdir(parents=True, exist_ok=True)
        if self.user is not None:
            shutil.chown(self.data, self.user, self.user)
            self.data.chmod(0o700)
        initdb = [
            str(self.installed.postgres_bin / "initdb"),
            "-D",
            str(self.data),
            "-U",
            "postgres",
            # Local development only: connections are accepted from 127.0.0.1 without a password.
            "--auth=trust",
            "--encoding=UTF8",
            "--no-locale",
        ]
        kwargs: dict[str, Any] = {"user": self.user, "group": self.user, "extra_groups": []} if self.user else {}
        result = subprocess.run(initdb, capture_output=True, text=True, check=False, cwd="/", **kwargs)
        if result.returncode != 0:
            raise RuntimeError(f"postgres: initdb failed:\n{result.stdout}{result.stderr}")

    def ready(self) -> bool:
        return asyncio.run(self._query_ok())

    async def _query_ok(self) -> bool:
        import asyncpg

        try:
            connection = await asyncpg.connect(self.dsn("postgres"), timeout=2)
        except (OSError, asyncpg.PostgresError, asyncpg.CannotConnectNowError):
            return False
        try:
            return bool(await connection.fetchval("SELECT 1") == 1)
        finally:
            await connection.close()

    def provision(self) -> None:
        asyncio.run(self._provision())

    async def _provision(self) -> None:
        import asyncpg

        # One database per PostgreSQL service, as mesh.yaml declares it; its migrations
        # are migrations/platform then migrations/<service> (if it has any: a service only
        # a declaration names gets the platform's tables).
        databases = postgres_databases(self.settings.mesh)
        connection = await asyncpg.connect(self.dsn("postgres"))
        try:
            existing = {r["datname"] for r in await connection.fetch("SELECT datname FROM pg_database")}
            for database in (*databases.values(), FERRETDB_DATABASE):
                if database not in existing:
                    await connection.execute(f'CREATE DATABASE "{database}"')
        finally:
            await connection.close()
        for service, database in databases.items():
            applied = await migrate(self.dsn(database), service, own_required=False)
            for name in applied:
                print(f"    migrated {service}: {name}", flush=True)
        for service, database in databases.items():
            await self._load_demo_data(service, database)

    async def _load_demo_data(self, service: str, database: str) -> None:
        """A service's demo data (DEMO_DATA/<service>.sql), if it has any; idempotent (see the file)."""
        import asyncpg

        script = DEMO_DATA / f"{service}.sql"
        if not script.exists():
            return
        connection = await asyncpg.connect(self.dsn(database))
        try:
            status = await connection.execute(script.read_text())
        finally:
            await connection.close()
        if status != "INSERT 0 0":
            print(f"    loaded {service}'s demo data ({status.split()[-1]} rows)", flush=True)


class LocalStripe(Component):
    """localstripe, the stateful Stripe emulator, in its own virtualenv."""

    name = "localstripe"
    api_key = LOCALSTRIPE_API_KEY
    webhook_secret = LOCALSTRIPE_WEBHOOK_SECRET

    @property
    def port(self) -> int:
        return self.settings.ports.localstripe

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def argv(self) -> list[str]:
        return [
            str(self.installed.localstripe_python),
            str(REPO / "scripts" / "localstripe_launcher.py"),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--store",
            str(self.settings.data_dir / "localstripe" / "state.pickle"),
        ]

    def prepare(self) -> None:
        (self.settings.data_dir / "localstripe").mkdir(parents=True, exist_ok=True)

    def ready(self) -> bool:
        request = urllib.request.Request(
            f"{self.api_base}/v1/customers?limit=1", headers={"Authorization": f"Bearer {LOCALSTRIPE_API_KEY}"}
        )
        with urllib.request.urlopen(request, timeout=2) as response:
            return bool(response.status == 200)

    def provision(self) -> None:
        """Register the edge's webhook URL and signing secret (localstripe keeps them in memory only).

        Envoy starts later; localstripe calls the URL only when an event happens.
        """
        body = urllib.parse.urlencode(
            {"url": self.settings.edge_url + WEBHOOK_PATH, "secret": self.webhook_secret}
        ).encode()
        request = urllib.request.Request(
            f"{self.api_base}/_config/webhooks/{LOCALSTRIPE_WEBHOOK_ID}", data=body, method="POST"
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            if response.status != 200:
                raise RuntimeError(f"localstripe: registering the webhook answered HTTP {response.status}")


class Mailpit(Component):
    """Mailpit: the SMTP server notifications sends to, with a web UI and an HTTP API on a second port.

    Its messages persist in the data directory (by default it forgets them on exit)
    and are never pruned (by default it keeps only 500).
    """

    name = "mailpit"

    @property
    def port(self) -> int:
        return self.settings.ports.mailpit_smtp

    @property
    def ui_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.ports.mailpit_http}"

    def argv(self) -> list[str]:
        return [
            str(self.installed.mailpit),
            "--database",
            str(self.settings.data_dir / "mailpit.db"),
            "--max",
            "0",
            "--smtp",
            f"127.0.0.1:{self.port}",
            "--listen",
            f"127.0.0.1:{self.settings.ports.mailpit_http}",
            # No calls to GitHub asking for a newer release.
            "--disable-version-check",
        ]

    def ready(self) -> bool:
        if not port_open(self.port):
            return False
        with urllib.request.urlopen(f"{self.ui_url}/readyz", timeout=2) as response:
            return bool(response.status == 200)


class Jaeger(Component):
    """Jaeger v2 with in-memory storage: the services' traces over OTLP, and its query API.

    Its configuration (an OpenTelemetry Collector file) is rendered on every start so
    port overrides apply; every listener is on 127.0.0.1 and declared in Ports (the
    collector's own metrics are off, so it opens nothing else). The binary serves no
    web UI (see install.install_jaeger): `make trace ID=<trace id>` prints a trace.
    Traces live only as long as the process.
    """

    name = "jaeger"

    @property
    def port(self) -> int:
        return self.settings.ports.jaeger_query

    @property
    def otlp_endpoint(self) -> str:
        """What the services get as OTEL_EXPORTER_OTLP_ENDPOINT (OTLP over gRPC)."""
        return f"http://127.0.0.1:{self.settings.ports.jaeger_otlp}"

    @property
    def query_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def config_file(self) -> Path:
        return self.settings.data_dir / "jaeger" / "config.yaml"

    def config(self) -> dict[str, Any]:
        ports = self.settings.ports

        def local(port: int) -> dict[str, str]:
            return {"endpoint": f"127.0.0.1:{port}"}

        return {
            "service": {
                "extensions": ["jaeger_storage", "jaeger_query"],
                "pipelines": {
                    "traces": {
                        "receivers": ["otlp"],
                        "processors": ["batch"],
                        "exporters": ["jaeger_storage_exporter"],
                    }
                },
                "telemetry": {"metrics": {"level": "none"}, "logs": {"level": "warn"}},
            },
            "extensions": {
                "jaeger_storage": {"backends": {"memstore": {"memory": {"max_traces": 100_000}}}},
                "jaeger_query": {
                    "storage": {"traces": "memstore"},
                    "http": local(ports.jaeger_query),
                    "grpc": local(ports.jaeger_query_grpc),
                },
            },
            "receivers": {
                "otlp": {"protocols": {"grpc": local(ports.jaeger_otlp), "http": local(ports.jaeger_otlp_http)}}
            },
            # A short batch delay: a trace is readable soon after its last span ends.
            "processors": {"batch": {"timeout": "200ms"}},
            "exporters": {"jaeger_storage_exporter": {"trace_storage": "memstore"}},
        }

    def argv(self) -> list[str]:
        return [str(self.installed.jaeger), "--config", str(self.config_file)]

    def prepare(self) -> None:
        import yaml

        self.config_file.parent.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(yaml.safe_dump(self.config(), sort_keys=False))

    def ready(self) -> bool:
        if not port_open(self.settings.ports.jaeger_otlp):
            return False
        with urllib.request.urlopen(f"{self.query_url}/api/services", timeout=2) as response:
            return bool(response.status == 200)


class Service(Component):
    """One Python gRPC service of the mesh declaration.

    Its ports are bound with SO_REUSEPORT, so a successor process can be started on
    them while it runs (`Stack.roll`); a normal start first checks that nothing
    listens on them, so no stale process shares them unnoticed.
    """

    start_timeout = 30.0

    def __init__(
        self,
        settings: StackSettings,
        installed: Installed,
        service: str,
        stack_env: dict[str, str],
        documents: FerretDB | None = None,
    ) -> None:
        super().__init__(settings, installed)
        self.name = service
        self._stack_env = stack_env
        # Its document store, when it keeps its data there (its declared indexes are served, see provision).
        self._documents = documents

    @property
    def port(self) -> int:
        return self.settings.ports.grpc(self.name)

    @property
    def identity(self) -> str | None:
        return self.name

    def argv(self) -> list[str]:
        return [sys.executable, "-m", f"shopmesh_{self.name}"]

    def env(self) -> dict[str, str]:
        ports = self.settings.ports
        return {
            **super().env(),
            **self._stack_env,
            "PYTHONUNBUFFERED": "1",
            "SHOPMESH_GRPC_PORT": str(ports.grpc(self.name)),
            "SHOPMESH_METRICS_PORT": str(ports.metrics(self.name)),
            # The instance's declaration: the service checks its callers and finds its peers by it.
            "SHOPMESH_MESH_FILE": str(self.settings.mesh_file),
            "SHOPMESH_TOPICS_FILE": str(self.settings.topics_file),
            **{address_variable(other): f"127.0.0.1:{ports.grpc(other)}" for other in self.settings.services},
            **self._tls_env(),
            "SHOPMESH_REUSE_PORT": "on",
            **self.settings.service_env,
        }

    def prepare(self) -> None:
        ports = self.settings.ports
        taken = [port for port in (ports.grpc(self.name), ports.metrics(self.name)) if not port_free(port)]
        if taken:
            raise StartError(
                f"{self.name}: port {taken[0]} is in use by a process this stack does not know (no pid file of ours)"
            )

    def successor(self, probe_port: int) -> ManagedProcess:
        """A second process of this service on the same ports, with a metrics port of its own (`probe_port`)."""
        spec = self.process.spec
        return ManagedProcess(
            replace(
                spec,
                env={**spec.env, "SHOPMESH_PROBE_PORT": str(probe_port)},
                pid_file=spec.pid_file.with_suffix(".successor.pid"),
            )
        )

    @staticmethod
    def serving_alone(probe_port: int) -> bool:
        """Whether the process with this probe port is SERVING and answers user calls (deny-list replayed)."""
        metrics = scrape(probe_port)
        return metrics.get("health_serving") == 1.0 and metrics.get("revocations_loaded", 1.0) == 1.0

    def _tls_env(self) -> dict[str, str]:
        files = self.settings.tls_files(self.name)
        if files is None:
            return {"MESH_TLS": "off"}
        return {
            "MESH_TLS": "on",
            "SHOPMESH_TLS_CERT": str(files.cert),
            "SHOPMESH_TLS_KEY": str(files.key),
            "SHOPMESH_TLS_CA": str(files.ca),
        }

    def ready(self) -> bool:
        return bool(health_status(self.settings, self.name) == health_pb2.HealthCheckResponse.SERVING)

    def provision(self) -> None:
        """A document-store service has declared its indexes by now: let FerretDB's PostgreSQL use them."""
        storage = self.settings.mesh.service(self.name).storage
        if self._documents is None or storage is None:
            return
        added = self._documents.serve_declared_indexes(storage.database)
        if added:
            print(f"    indexed for ferretdb: {', '.join(added)}", flush=True)

    def revocations_loaded(self) -> bool:
        """Whether its deny-list has been replayed (user calls answered); services without one: True.

        Health is SERVING before that (Kafka is no reason to stop serving), so `up`
        waits for this too before it says the stack is up.
        """
        return scrape(self.settings.ports.metrics(self.name)).get("revocations_loaded", 1.0) == 1.0


class Kafka(Component):
    """Apache Kafka in KRaft combined mode (broker and controller), single node."""

    name = "kafka"
    start_timeout = 90.0

    @property
    def port(self) -> int:
        return self.settings.ports.kafka

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def home(self) -> Path:
        return self.settings.data_dir / "kafka"

    def properties(self) -> str:
        ports = self.settings.ports
        controller = f"127.0.0.1:{ports.kafka_controller}"
        settings = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.bootstrap.servers": controller,
            "listeners": f"PLAINTEXT://127.0.0.1:{ports.kafka},CONTROLLER://{controller}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{ports.kafka},CONTROLLER://{controller}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(self.home / "data"),
            # Topics exist only if declared in kafka/topics.yaml.
            "auto.create.topics.enable": "false",
            "num.partitions": "1",
            "default.replication.factor": "1",
            "min.insync.replicas": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "num.network.threads": "2",
            "num.io.threads": "2",
            "num.recovery.threads.per.data.dir": "1",
        }
        return "".join(f"{key}={value}\n" for key, value in settings.items())

    def _java(self, log_config: str, main: str, *args: str) -> list[str]:
        return [
            str(self.installed.java),
            "-Xms128m",
            "-Xmx512m",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={REPO / 'scripts' / 'kafka' / log_config}",
            "-cp",
            f"{self.installed.kafka_libs}/*",
            main,
            *args,
        ]

    def argv(self) -> list[str]:
        return self._java("log4j2.properties", "kafka.Kafka", str(self.home / "server.properties"))

    def prepare(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        # Rewritten every start so port overrides apply; the data stays.
        (self.home / "server.properties").write_text(self.properties())
        if (self.home / "data" / "meta.properties").exists():
            return
        import base64
        import uuid

        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        command = self._java(
            "tools-log4j2.properties",
            "kafka.tools.StorageTool",
            "format",
            "--standalone",
            # The = form: a random id may start with "-", which would read as an option.
            f"--cluster-id={cluster_id}",
            f"--config={self.home / 'server.properties'}",
        )
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"kafka: formatting storage failed:\n{result.stdout}{result.stderr}")

    def ready(self) -> bool:
        from shopmesh_stack.topics import broker_answers

        return port_open(self.port) and asyncio.run(broker_answers(self.bootstrap))

    def provision(self) -> None:
        from shopmesh_platform.events.topics import load_topic_specs
        from shopmesh_stack.topics import create_topics

        created = asyncio.run(create_topics(self.bootstrap, load_topic_specs(self.settings.topics_file), replication=1))
        for name in created:
            print(f"    created topic {name}", flush=True)


class FerretDB(Component):
    """FerretDB v1: the MongoDB wire protocol on the stack's PostgreSQL."""

    name = "ferretdb"

    def __init__(self, settings: StackSettings, installed: Installed, postgres: Postgres) -> None:
        super().__init__(settings, installed)
        self._postgres = postgres

    @property
    def port(self) -> int:
        return self.settings.ports.ferretdb

    @property
    def url(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/"

    def argv(self) -> list[str]:
        return [
            str(self.installed.ferretdb),
            "--handler=postgresql",
            f"--postgresql-url={self._postgres.dsn(FERRETDB_DATABASE)}",
            f"--listen-addr=127.0.0.1:{self.port}",
            f"--state-dir={self.settings.data_dir / 'ferretdb'}",
            "--telemetry=disable",
            "--debug-addr=-",
            "--log-level=info",
        ]

    def prepare(self) -> None:
        (self.settings.data_dir / "ferretdb").mkdir(parents=True, exist_ok=True)

    def ready(self) -> bool:
        from pymongo import MongoClient

        client: MongoClient[dict[str, Any]]
        with MongoClient(self.url, serverSelectionTimeoutMS=1000) as client:
            return bool(client.admin.command("ping").get("ok") == 1)

    def serve_declared_indexes(self, database: str) -> list[str]:
        """GIN indexes in PostgreSQL for the indexes declared in `database` (see `document_indexes`)."""
        from shopmesh_stack.document_indexes import serve_declared_indexes

        return serve_declared_indexes(self.url, self._postgres.dsn(FERRETDB_DATABASE), database)


class Edge(Component):
    """Envoy at the edge, its config rendered from the mesh declaration and validated.

    A stack has one; tests may start another with different ports, budgets and profile.
    Its admin interface is a Unix socket in its directory (mode 0600), which the
    readiness probe reads; only /ready and /stats/prometheus reach TCP (metrics port).
    """

    def __init__(
        self,
        settings: StackSettings,
        installed: Installed,
        *,
        name: str = "envoy",
        listen_port: int | None = None,
        metrics_port: int | None = None,
        rate_limit_overrides: str | None = None,
        profile: str | None = None,
        policy_overrides: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(settings, installed)
        self.name = name
        self._listen_port = listen_port or settings.ports.edge
        self.metrics_port = metrics_port or settings.ports.edge_metrics
        self._rate_limits = settings.edge_rate_limits if rate_limit_overrides is None else rate_limit_overrides
        self.profile = profile or settings.edge_profile
        # Fields of EdgePolicy replaced for this instance (tests: a small stream cap).
        self._policy_overrides = dict(policy_overrides or {})

    @property
    def port(self) -> int:
        return self._listen_port

    @property
    def identity(self) -> str | None:
        return "edge"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def config_file(self) -> Path:
        return self.settings.data_dir / self.name / "envoy.yaml"

    @property
    def admin_socket(self) -> Path:
        return self.settings.data_dir / self.name / "admin.sock"

    @property
    def platform_api(self) -> bool:
        """Whether health checks and reflection have routes at this edge (its profile)."""
        return self.policy().platform_api.enabled(self.profile)

    def policy(self) -> EdgePolicy:
        from shopmesh_edge.policy import load_edge_policy

        policy = load_edge_policy(
            self.settings.mesh_file,
            rate_limit_overrides=self._rate_limits,
            extra_origins=self.settings.edge_cors_origins,
        )
        return replace(policy, **self._policy_overrides)

    def argv(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "shopmesh_stack.keeper",
            "--",
            str(self.installed.envoy),
            "-c",
            str(self.config_file),
            "--base-id-path",
            str(self.config_file.parent / "base-id"),
            "--use-dynamic-base-id",
            "--log-level",
            "warn",
        ]

    def edge_settings(self) -> EdgeSettings:
        """What this instance renders: its ports, an upstream for every service of the mesh, its files."""
        from shopmesh_edge.render import EdgeSettings, UpstreamTls
        from shopmesh_stack.pki import ISSUED_MARKERS

        ports = self.settings.ports
        return EdgeSettings(
            listen_port=self.port,
            metrics_port=self.metrics_port,
            admin_socket=self.admin_socket,
            upstream_ports={name: ports.grpc(name) for name in self.settings.services},
            descriptor=REPO / "gen" / "descriptors" / "shopmesh.binpb",
            openapi_document=REPO / "gen" / "openapi" / "openapi.json",
            access_log=self.settings.log_dir / f"{self.name}-access.log",
            policy=self.policy(),
            profile=self.profile,
            jwt_issuer=self.settings.jwt_issuer,
            jwt_audience=self.settings.jwt_audience,
            jwks_cache_seconds=self.settings.jwks_refresh_seconds,
            upstream_tls=UpstreamTls(
                files.cert, files.key, files.ca, self.config_file.parent / "sds", self.settings.pki_dir / ISSUED_MARKERS
            )
            if (files := self.settings.tls_files("edge"))
            else None,
        )

    def prepare(self) -> None:
        from shopmesh_edge.render import render_yaml, sds_resources

        self.config_file.parent.mkdir(parents=True, exist_ok=True)
        edge = self.edge_settings()
        if edge.upstream_tls is not None:
            for path, resource in sds_resources(edge.upstream_tls).items():
                path.parent.mkdir(exist_ok=True)
                path.write_text(resource)
        self.config_file.write_text(render_yaml(self.settings.mesh, edge))
        result = subprocess.run(
            [str(self.installed.envoy), "--mode", "validate", "-c", str(self.config_file)],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"envoy: rendered config {self.config_file} is invalid:\n{result.stdout}{result.stderr}")

    def _admin(self, target: str) -> str:
        status, body = admin_get(self.admin_socket, target)
        if status != 200:
            raise OSError(f"envoy admin {target}: HTTP {status}")
        return body

    def ready(self) -> bool:
        # Serving, and the token issuer's JWKS fetched (else every token would be refused).
        if self._admin("/ready").strip() != "LIVE":
            return False
        stats = self._admin("/stats?filter=jwks_fetch_success")
        return any(line.rsplit(":", 1)[-1].strip() not in ("", "0") for line in stats.splitlines())
