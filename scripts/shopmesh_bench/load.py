"""Running the load generators and reading a process's CPU time."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import FileDescriptor

from shopmesh_bench.results import Measurement, parse_ghz, parse_h2load

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid: int | str) -> list[str] | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The fields after the command name (which may hold spaces), from field 3 (state) on.
    return stat.rsplit(")", 1)[1].split()


def cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU time a process and its descendants (a launcher's child) have used so far.

    None if the process is gone.
    """
    if pid is None:
        return None
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(entry.name)) is not None:
            parents[int(entry.name)] = int(fields[1])
    family = {pid}
    grew = True
    while grew:
        found = {child for child, parent in parents.items() if parent in family} - family
        family |= found
        grew = bool(found)
    total = 0.0
    for member in family:
        fields = _stat(member)
        if fields is None:
            if member == pid:
                return None
            continue
        total += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime (fields 14, 15)
    return total


def write_protoset(path: Path, *files: FileDescriptor) -> Path:
    """A FileDescriptorSet of `files` and their imports, for ghz.

    ghz resolves a call by reflection otherwise, asking for the file of the
    method's symbol, which Python's reflection service does not find.
    """
    seen: dict[str, FileDescriptor] = {}

    def visit(file: FileDescriptor) -> None:
        if file.name in seen:
            return
        for dependency in file.dependencies:
            visit(dependency)
        seen[file.name] = file

    for file in files:
        visit(file)
    descriptor_set = descriptor_pb2.FileDescriptorSet()
    for file in seen.values():
        file.CopyToProto(descriptor_set.file.add())
    path.write_bytes(descriptor_set.SerializeToString())
    return path


@dataclass(frozen=True)
class TlsClient:
    """The client certificate a gRPC target is called with, and the name the server's must carry."""

    ca: Path
    cert: Path
    key: Path
    server_name: str


@dataclass(frozen=True)
class GrpcTarget:
    name: str
    address: str
    call: str
    tls: TlsClient | None
    metadata: dict[str, str]
    server_pid: int | None


@dataclass(frozen=True)
class RestTarget:
    name: str
    url: str
    headers: dict[str, str]
    server_pid: int | None
    proxy_pid: int | None


def _delta(before: float | None, after: float | None) -> float | None:
    return None if before is None or after is None else after - before


def run_ghz(ghz: Path, protoset: Path, target: GrpcTarget, concurrency: int, seconds: float) -> Measurement:
    argv: list[str] = [
        str(ghz),
        "--protoset",
        str(protoset),
        "--call",
        target.call,
        "--data",
        "{}",
        "--concurrency",
        str(concurrency),
        "--connections",
        "1",
        "--duration",
        f"{seconds:g}s",
        "--format",
        "json",
    ]
    if target.metadata:
        argv += ["--metadata", json.dumps(target.metadata)]
    if target.tls is None:
        argv.append("--insecure")
    else:
        tls = target.tls
        argv += ["--cacert", str(tls.ca), "--cert", str(tls.cert), "--key", str(tls.key), "--cname", tls.server_name]
    argv.append(target.address)
    before = cpu_seconds(target.server_pid)
    completed = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=False)
    after = cpu_seconds(target.server_pid)
    if completed.returncode != 0 and not completed.stdout.strip():
        raise RuntimeError(f"ghz failed on {target.name}: {completed.stderr[-500:]}")
    return parse_ghz(json.loads(completed.stdout)).with_cpu(_delta(before, after))


def run_h2load(h2load: Path, target: RestTarget, concurrency: int, seconds: float) -> Measurement:
    with tempfile.TemporaryDirectory(prefix="shopmesh-bench-") as scratch:
        log = Path(scratch) / "requests.tsv"
        argv: Sequence[str] = [
            str(h2load),
            "--clients=1",
            f"--max-concurrent-streams={concurrency}",
            f"--duration={seconds:g}",
            f"--log-file={log}",
            *(f"--header={name}: {value}" for name, value in target.headers.items()),
            target.url,
        ]
        before = cpu_seconds(target.server_pid), cpu_seconds(target.proxy_pid)
        completed = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=False)
        after = cpu_seconds(target.server_pid), cpu_seconds(target.proxy_pid)
        if completed.returncode != 0:
            raise RuntimeError(f"h2load failed on {target.name}: {completed.stdout[-300:]} {completed.stderr[-300:]}")
        lines = log.read_text().splitlines() if log.exists() else []
    measured = parse_h2load(completed.stdout, lines)
    return measured.with_cpu(_delta(before[0], after[0]), _delta(before[1], after[1]))
