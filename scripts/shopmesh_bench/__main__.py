"""`make bench-platform`: one run that measures the platform against a bare server.

Starts its own stack instance (temporary directory, free ports, edge rate
budgets raised so the load generator is not throttled), a bare grpc.aio server
(shopmesh_bench.bare_server) and one benchmark-only users server per chain
variant (shopmesh_bench.chain_server); registers a user; then, interleaving
targets so machine noise hits them alike, measures each point BENCH_RUNS times
(default 3) for BENCH_DURATION seconds (default 5) and keeps the medians.
Writes bench/results/<time>-<BENCH_LABEL>.json and .md and rewrites
BENCHMARKS.md with the latest report and the history of earlier ones. The
stack's services export spans to its Jaeger; here they do not unless
BENCH_TRACES=on (the chain servers inherit the users service's environment).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from grpc_health.v1 import health_pb2

from shopmesh.user.v1 import user_service_pb2
from shopmesh_bench import results
from shopmesh_bench.host import log, machine
from shopmesh_bench.load import GrpcTarget, RestTarget, TlsClient, run_ghz, run_h2load, write_protoset
from shopmesh_bench.report import SECTION_START as SUITE_SECTION_START
from shopmesh_bench.results import Measurement
from shopmesh_bench.tools import install_ghz, install_h2load
from shopmesh_platform.config import EnvReader
from shopmesh_stack.settings import REPO, StackSettings
from shopmesh_stack.stack import Stack

CONCURRENCIES = (1, 16, 64)
INTERCEPTOR_CONCURRENCY = 16
CHAIN_VARIANTS = (
    ("full chain", ""),
    ("without request_id", "request_id"),
    ("without tracing", "tracing"),
    ("without access_log", "access_log"),
    ("without metrics", "metrics"),
    ("without status", "status"),
    ("without deadline", "deadline"),
    ("without auth (fixed caller)", "auth"),
    ("without validation", "validation"),
    ("no interceptors (fixed caller)", "all"),
)
RESULTS_DIR = REPO / "bench" / "results"
BENCHMARKS = REPO / "BENCHMARKS.md"
NOTES_FILE = REPO / "bench" / "NOTES.md"
RAISED_BUDGET = {"per_minute": 10_000_000, "per_hour": 100_000_000}
EDGE_RATE_LIMITS = json.dumps(
    {
        name: RAISED_BUDGET
        for name in ("users", "orders", "payments", "inventory", "notifications", "users.Login", "users.RegisterUser")
    }
)
NOTES = (
    "the edge's rate budgets were raised for the run (10M/min per route) so the load generator is not throttled; "
    "ghz over one connection (gRPC), h2load over one h2c connection (REST)."
)
# The stack exports every service's spans to its Jaeger; the platform's cost per call is
# measured as configured without an exporter unless BENCH_TRACES=on.
NO_EXPORT = {"OTEL_EXPORTER_OTLP_ENDPOINT": ""}
NOTES_NO_EXPORT = " Spans not exported (the stack's OTLP endpoint unset for the run; BENCH_TRACES=on exports them)."
NOTES_EXPORT = " Spans exported to the stack's Jaeger (BENCH_TRACES=on)."
SERVER_START_SECONDS = 90.0


def read_announcement(process: subprocess.Popen[str], what: str) -> dict[str, Any]:
    """The JSON line a server prints once it serves, within a deadline."""
    assert process.stdout is not None
    deadline = time.monotonic() + SERVER_START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode} before serving")
        ready, _, _ = select.select([process.stdout], [], [], 1.0)
        if ready:
            line = process.stdout.readline()
            if line.startswith("{"):
                return dict(json.loads(line))
    raise RuntimeError(f"{what} did not start serving within {SERVER_START_SECONDS:.0f}s")


@contextlib.contextmanager
def started(argv: list[str], env: Mapping[str, str], what: str, log_file: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Run a server process until the block ends; yields its pid and announcement."""
    with log_file.open("w") as errors:
        process = subprocess.Popen(argv, env=dict(env), stdout=subprocess.PIPE, stderr=errors, text=True)
        try:
            yield process.pid, read_announcement(process, what)
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def register_user(stack: Stack) -> tuple[str, str]:
    body = json.dumps(
        {
            "email": f"bench-{time.time_ns()}@example.com",
            "password": "bench password 42",
            "firstName": "Ada",
            "lastName": "Lovelace",
        }
    )
    request = urllib.request.Request(
        f"{stack.settings.edge_url}/api/v1/users/register",
        data=body.encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        reply = json.loads(response.read())
    return reply["user"]["id"], reply["token"]


def measure_all(
    measure: Any, names: list[str], concurrencies: tuple[int, ...], runs: int
) -> dict[str, dict[int, Measurement]]:
    """Interleaved runs of every (target, concurrency); medians per point."""
    collected: dict[str, dict[int, list[Measurement]]] = {n: {c: [] for c in concurrencies} for n in names}
    for run in range(runs):
        for name in names:
            for concurrency in concurrencies:
                measured = measure(name, concurrency)
                collected[name][concurrency].append(measured)
                log(
                    f"run {run + 1}/{runs} {name} c={concurrency}: {measured.qps:.0f}/s "
                    f"p50 {measured.p50_ms:.2f} ms p99 {measured.p99_ms:.2f} ms "
                    f"cpu {measured.cpu_ms_per_call or 0:.3f} ms/call errors {measured.errors}"
                )
    return {n: {c: results.median_of(ms) for c, ms in by_c.items()} for n, by_c in collected.items()}


def history_rows() -> list[str]:
    rows = []
    for path in sorted(RESULTS_DIR.glob("*.json")):
        report = json.loads(path.read_text())
        at16 = {(r["subject"], r["reference"]): r for r in report["ratios"] if r["concurrency"] == 16}

        def cell(pair: tuple[str, str], key: str, spec: str, table: Mapping[tuple[str, str], Any] = at16) -> str:
            found = table.get(pair)
            return "-" if found is None else format(found[key], spec)

        getme = report["medians"].get("platform GetMe", {}).get("16", {})
        rows.append(
            f"| [{path.stem}](bench/results/{path.name}) | {report['machine']['load_average'][0]:.1f} "
            f"| {cell(('platform Health', 'bare-mtls Health'), 'qps', '.2f')} "
            f"| {cell(('platform GetMe', 'bare-mtls GetMe'), 'qps', '.2f')} "
            f"| {getme.get('cpu_ms_per_call') or 0:.3f} "
            f"| {cell(('REST /users/me', 'platform GetMe'), 'p50_delta_ms', '+.2f')} "
            f"| {cell(('REST /users/me', 'platform GetMe'), 'qps', '.2f')} |"
        )
    return rows


def write_benchmarks(latest_markdown: str) -> None:
    intro = (
        "# Benchmarks\n\n"
        "`make bench-platform` measures, in one run on one machine, a bare grpc.aio server against the "
        "platform (see scripts/shopmesh_bench). Absolute numbers depend on the machine and its load; the "
        "ratios to the bare server measured in the same run are what to compare. Not part of `make test`.\n\n"
        "## History (concurrency 16; ratios to the bare server, REST to direct gRPC)\n\n"
        "| run | load avg | Health QPS | GetMe QPS | GetMe CPU ms/call | REST p50 delta ms | REST QPS |\n"
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |\n"
    )
    # What the numbers mean and what stands in the way of the goal: written by people, kept across runs.
    notes = NOTES_FILE.read_text() + "\n" if NOTES_FILE.exists() else ""
    # The checkout suite's section (shopmesh_bench.suite, from its start marker on) is kept as it is.
    previous = BENCHMARKS.read_text() if BENCHMARKS.exists() else ""
    suite_at = previous.find(SUITE_SECTION_START)
    kept = "\n" + previous[suite_at:] if suite_at >= 0 else ""
    BENCHMARKS.write_text(
        intro + "\n".join(history_rows()) + "\n\n" + notes + "# Latest run\n\n" + latest_markdown + kept
    )


def main() -> None:
    env = os.environ
    read = EnvReader(env)
    seconds = read.number("BENCH_DURATION", 5.0, minimum=1.0, maximum=600.0)
    runs = read.integer("BENCH_RUNS", 3, minimum=1, maximum=20)
    label = read.string("BENCH_LABEL", "latest")
    skip_chain = read.choice("BENCH_INTERCEPTORS", "on", ("on", "off")) == "off"
    traces = read.choice("BENCH_TRACES", "off", ("on", "off")) == "on"
    notes = NOTES + (NOTES_EXPORT if traces else NOTES_NO_EXPORT)
    started_at = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H%M%SZ")
    host = machine()
    log(f"{host['nproc']} cores ({host['cpu_model']}), load average {host['load_average']}")
    settings = StackSettings.isolated(
        Path(tempfile.mkdtemp(prefix="shopmesh-bench-")),
        {"SHOPMESH_LOG_LEVEL": "info", **({} if traces else NO_EXPORT)},
        edge_rate_limits=EDGE_RATE_LIMITS,
    )
    ghz = install_ghz(settings.cache_dir)
    h2load = install_h2load()
    log(f"starting a stack instance in {settings.data_dir}; {notes}")
    stack = Stack(settings)
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(shutil.rmtree, settings.data_dir, ignore_errors=True)
        cleanup.callback(stack.down)
        stack.up()
        report = run(stack, ghz, h2load, seconds=seconds, runs=runs, skip_chain=skip_chain, cleanup=cleanup)
    report.update(label=label, started_at=started_at, machine=host, notes=notes)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stem = RESULTS_DIR / f"{started_at}-{label}"
    stem.with_suffix(".json").write_text(results.to_json(report) + "\n")
    summary = results.markdown(json.loads(results.to_json(report)))
    stem.with_suffix(".md").write_text(summary)
    write_benchmarks(summary)
    print(summary)
    log(f"wrote {stem}.json, {stem}.md and {BENCHMARKS}")


def run(
    stack: Stack,
    ghz: Path,
    h2load: Path,
    *,
    seconds: float,
    runs: int,
    skip_chain: bool,
    cleanup: contextlib.ExitStack,
) -> dict[str, Any]:
    settings = stack.settings
    user_id, token = register_user(stack)
    log(f"registered user {user_id}")
    developer = settings.tls_files("developer")
    users_files = settings.tls_files("users")
    if developer is None or users_files is None:
        raise RuntimeError("the benchmark needs mesh TLS (MESH_TLS=on)")
    tls = TlsClient(developer.ca, developer.cert, developer.key, "users")
    bearer = {"authorization": f"Bearer {token}"}
    logs = settings.log_dir
    protoset = write_protoset(settings.data_dir / "bench.protoset", user_service_pb2.DESCRIPTOR, health_pb2.DESCRIPTOR)
    bare_pid, bare = cleanup.enter_context(
        started(
            [
                sys.executable,
                "-m",
                "shopmesh_bench.bare_server",
                str(users_files.cert),
                str(users_files.key),
                str(users_files.ca),
            ],
            os.environ,
            "the bare server",
            logs / "bench-bare.log",
        )
    )
    users_pid = stack.services["users"].process.pid()
    users_address = f"127.0.0.1:{settings.ports.grpc('users')}"
    health = "grpc.health.v1.Health.Check"
    getme = "shopmesh.user.v1.UserService.GetMe"
    grpc_targets = [
        GrpcTarget("bare-plaintext Health", f"127.0.0.1:{bare['plaintext']}", health, None, {}, bare_pid),
        GrpcTarget("bare-mtls Health", f"127.0.0.1:{bare['mtls']}", health, tls, {}, bare_pid),
        GrpcTarget("bare-mtls GetMe", f"127.0.0.1:{bare['mtls']}", getme, tls, bearer, bare_pid),
        GrpcTarget("platform Health", users_address, health, tls, {}, users_pid),
        GrpcTarget("platform GetMe", users_address, getme, tls, bearer, users_pid),
    ]
    rest = RestTarget(
        "REST /users/me", f"{settings.edge_url}/api/v1/users/me", bearer, users_pid, stack.edge.process.pid()
    )
    targets: dict[str, GrpcTarget | RestTarget] = {t.name: t for t in grpc_targets}
    targets[rest.name] = rest

    def measure(name: str, concurrency: int) -> Measurement:
        target = targets[name]
        if isinstance(target, RestTarget):
            return run_h2load(h2load, target, concurrency, seconds)
        return run_ghz(ghz, protoset, target, concurrency, seconds)

    for name in targets:  # warm-up: connections, caches, JIT-free but lazy imports
        measure(name, 16)
    medians = measure_all(measure, list(targets), CONCURRENCIES, runs)

    chain_medians: dict[str, Measurement] = {}
    if not skip_chain:
        users_env = stack.services["users"].env()
        variants: dict[str, GrpcTarget] = {}
        for variant, without in CHAIN_VARIANTS:
            server_env = {
                **users_env,
                "SHOPMESH_GRPC_PORT": "0",
                "SHOPMESH_METRICS_PORT": "0",
                "BENCH_WITHOUT": without,
                "BENCH_USER_ID": user_id,
            }
            pid, announced = cleanup.enter_context(
                started(
                    [sys.executable, "-m", "shopmesh_bench.chain_server"],
                    server_env,
                    f"the chain server {variant!r}",
                    logs / f"bench-chain-{without or 'full'}.log",
                )
            )
            variants[variant] = GrpcTarget(variant, f"127.0.0.1:{announced['port']}", getme, tls, bearer, pid)
        for target in variants.values():
            run_ghz(ghz, protoset, target, INTERCEPTOR_CONCURRENCY, min(seconds, 2.0))
        by_variant = measure_all(
            lambda name, c: run_ghz(ghz, protoset, variants[name], c, seconds),
            list(variants),
            (INTERCEPTOR_CONCURRENCY,),
            runs,
        )
        chain_medians = {name: by_c[INTERCEPTOR_CONCURRENCY] for name, by_c in by_variant.items()}

    found = results.ratios(medians)
    return {
        "duration_seconds": seconds,
        "runs": runs,
        "concurrencies": list(CONCURRENCIES),
        "medians": {name: {str(c): m for c, m in by_c.items()} for name, by_c in medians.items()},
        "ratios": found,
        "interceptor_concurrency": INTERCEPTOR_CONCURRENCY,
        "interceptors": results.interceptor_costs(chain_medians),
        "goal": results.goal_verdicts(found),
    }


if __name__ == "__main__":
    main()
