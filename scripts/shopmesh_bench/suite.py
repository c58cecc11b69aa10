"""`make bench-checkout | bench-register | bench-machine | bench-footprint` (and all four: `make bench`).

    python -m shopmesh_bench.suite [checkout] [register] [machine] [footprint]   (none: all)

Starts its own stack instance (temporary directory, free ports, the edge's rate
budgets raised so one client's load is not throttled: the report says so), timing
its start-up, then runs what was asked in one process tree:

- checkout: pre-registered customers; per run, an unloaded baseline rate, then each
  offered rate (BENCH_RATES, default 5,10,25,50,100: 10 to 100 and one step below,
  so a knee at or under 10/s on this machine is still straddled) for BENCH_DURATION
  seconds (default 60) with open-loop generators in processes of their own
  (shopmesh_bench.checkout_load); CPU of every process sampled from /proc over each
  step; after the runs, stuck orders and the stock ledger (exact). Medians of
  BENCH_RUNS runs (default 3); the knee and the CPU share of each process there.
- register: RegisterUser at a fixed concurrency, against one argon2id hash.
- machine: pgbench commits/s with fsync on the stack's own cluster, Kafka round trip.
- footprint: RSS per process tree idle and under load, up time fresh and restarted.

Fixed seeds (BENCH_SEED) and durations, all overridable from the environment. Writes
bench/results/<time>-<BENCH_LABEL>.md, and the data (result.json) and PNG charts in
bench/results/<time>-<BENCH_LABEL>/, and
rewrites the checkout section of BENCHMARKS.md (between its markers) with the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import asyncpg
from pymongo import AsyncMongoClient

from shopmesh_bench import charts as draw
from shopmesh_bench import procs, report
from shopmesh_bench.checkout_load import final_statuses
from shopmesh_bench.host import log
from shopmesh_bench.host import machine_in_full as machine
from shopmesh_bench.machine_limits import kafka_round_trip, postgres_commits
from shopmesh_bench.registration import (
    Account,
    argon2_hash_ms,
    argon2_parameters,
    register_accounts,
    registration_rate,
    service_hasher,
)
from shopmesh_bench.report import SECTION_END, SECTION_START
from shopmesh_bench.settling import SETTLE_WINDOW_SECONDS, settle
from shopmesh_bench.stats import cpu_shares, median
from shopmesh_inventory.ledger_check import check as ledger_check
from shopmesh_platform.config import EnvReader
from shopmesh_platform.kafka import KafkaConfig
from shopmesh_stack.procs import PARENT_DEATH_PREFIX
from shopmesh_stack.settings import REPO, StackSettings
from shopmesh_stack.stack import Stack

BENCHMARKS = ("checkout", "register", "machine", "footprint")
RESULTS_DIR = REPO / "bench" / "results"
BENCHMARKS_FILE = REPO / "BENCHMARKS.md"
NOTES_FILE = REPO / "bench" / "CHECKOUT_NOTES.md"
PRODUCT, PRICE = "prod-123", 29.99
RAISED_BUDGET = {"per_minute": 10_000_000, "per_hour": 100_000_000}
EDGE_RATE_LIMITS = json.dumps(
    {
        name: RAISED_BUDGET
        for name in (
            "users",
            "orders",
            "payments",
            "inventory",
            "notifications",
            "users.Login",
            "users.RegisterUser",
            "platform_api",
        )
    }
)
# A few pre-registered customers stand for many (argon2id makes each costly to create): each may hold
# more unpaid orders than a real customer (orders' limit is 5), or slow confirmations would refuse orders.
# The customers are registered once, and `make bench` runs longer than a token's default hour: the
# last steps and the final re-read of unfinished orders were refused UNAUTHENTICATED (round 5).
BENCH_SERVICE_DEFAULTS = {
    "SHOPMESH_LOG_LEVEL": "info",
    "SHOPMESH_ORDERS_MAX_PENDING_PER_CUSTOMER": "1000",
    "SHOPMESH_JWT_TTL_SECONDS": "21600",
}
NOTE = (
    "The edge's rate budgets were raised for the run (10M/min per route and method) so the load is not "
    "throttled, and each customer may hold 1000 unpaid orders (SHOPMESH_ORDERS_MAX_PENDING_PER_CUSTOMER; "
    "the few pre-registered customers stand for many); tokens live 6 h (SHOPMESH_JWT_TTL_SECONDS), longer "
    "than the run."
)
GENERATOR_START_SECONDS = 5.0
LEDGER_SETTLE_SECONDS = 120.0


@dataclass(frozen=True)
class SuiteConfig:
    """Durations, rates, runs and seeds: fixed defaults, each overridable from the environment."""

    seconds: float
    rates: tuple[float, ...]
    baseline_rate: float
    runs: int
    seed: int
    label: str
    generators: int
    accounts: int
    confirm_timeout: float
    register_seconds: float
    register_concurrency: int
    machine_seconds: float
    kafka_messages: int
    footprint_rate: float
    # Extra settings for the bench stack's services (BENCH_SERVICE_ENV="NAME=value,..."), for before/after runs.
    service_env: tuple[tuple[str, str], ...]
    # Off for experiments (before/after runs) whose results should not replace BENCHMARKS.md's latest run.
    update_benchmarks: bool

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> SuiteConfig:
        read = EnvReader(env)
        seconds = read.number("BENCH_DURATION", 60.0, minimum=1.0, maximum=3600.0)
        rates = tuple(float(r) for r in read.string("BENCH_RATES", "5,10,25,50,100").split(",") if r.strip())
        if not rates or any(r <= 0 for r in rates):
            raise ValueError("BENCH_RATES must list positive rates, e.g. 10,25,50,100")
        return cls(
            seconds=seconds,
            rates=tuple(sorted(rates)),
            baseline_rate=read.number("BENCH_BASELINE_RATE", 2.0, minimum=0.1, maximum=100.0),
            runs=read.integer("BENCH_RUNS", 3, minimum=1, maximum=20),
            seed=read.integer("BENCH_SEED", 20, minimum=0, maximum=2**31),
            label=read.string("BENCH_LABEL", "suite"),
            generators=read.integer("BENCH_GENERATORS", 2, minimum=1, maximum=16),
            accounts=read.integer("BENCH_ACCOUNTS", 20, minimum=1, maximum=1000),
            confirm_timeout=read.number("BENCH_CONFIRM_TIMEOUT", 30.0, minimum=1.0, maximum=600.0),
            register_seconds=read.number("BENCH_REGISTER_DURATION", min(seconds, 30.0), minimum=1.0, maximum=3600.0),
            register_concurrency=read.integer("BENCH_REGISTER_CONCURRENCY", 4, minimum=1, maximum=64),
            machine_seconds=read.number("BENCH_MACHINE_DURATION", min(seconds, 20.0), minimum=1.0, maximum=600.0),
            kafka_messages=read.integer("BENCH_KAFKA_MESSAGES", 200, minimum=10, maximum=100_000),
            footprint_rate=read.number("BENCH_FOOTPRINT_RATE", 25.0, minimum=0.1, maximum=1000.0),
            service_env=parse_service_env(read.optional("BENCH_SERVICE_ENV") or ""),
            update_benchmarks=read.choice("BENCH_UPDATE_BENCHMARKS", "on", ("on", "off")) == "on",
        )


def parse_service_env(text: str) -> tuple[tuple[str, str], ...]:
    """`NAME=value,NAME=value` -> pairs; only SHOPMESH_* settings (the services read nothing else of ours)."""
    pairs = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, equals, value = item.partition("=")
        if not equals or not name.startswith("SHOPMESH_"):
            raise ValueError(f"BENCH_SERVICE_ENV: expected SHOPMESH_NAME=value, got {item!r}")
        pairs.append((name, value))
    return tuple(pairs)


def stack_roots(stack: Stack) -> dict[str, int]:
    """Each running component's pid by name (services by their own names, Envoy as `envoy`)."""
    found = {}
    for component in stack.components:
        pid = component.process.pid()
        if pid is not None:
            found[component.name] = pid
    return found


def memory_of(usage: Mapping[str, procs.Usage]) -> dict[str, dict[str, int]]:
    """RSS and PSS (bytes) of each of the stack's process trees (not the load generators)."""
    return {
        name: {"rss": used.rss_bytes, "pss": used.pss_bytes}
        for name, used in usage.items()
        if not name.startswith("load generator")
    }


# ---- checkout ---------------------------------------------------------------------------------


async def _count(dsn: str, query: str, *args: object) -> int:
    """One integer from one query, on a connection of its own (the suite's reads of a service's database)."""
    connection = await asyncpg.connect(dsn)
    try:
        return int(await connection.fetchval(query, *args))
    finally:
        await connection.close()


async def _on_hand(dsn: str) -> int:
    return await _count(dsn, "SELECT on_hand FROM products WHERE id = $1", PRODUCT)


def run_step(
    stack: Stack,
    config: SuiteConfig,
    accounts: Sequence[Account],
    rate: float,
    *,
    seconds: float,
    seed: int,
    work: Path,
) -> tuple[dict[str, Any], dict[str, procs.Usage]]:
    """One offered rate for `seconds`: generators started together, CPU sampled over the arrivals."""
    generators = min(config.generators, len(accounts))
    start_at = time.time() + GENERATOR_START_SECONDS
    running = []
    for index in range(generators):
        spec = {
            "edge": f"127.0.0.1:{stack.settings.ports.edge}",
            "accounts": [(a.user_id, a.token) for a in accounts[index::generators]],
            "rate": rate / generators,
            "seconds": seconds,
            "seed": seed * 100 + index,
            "start_at": start_at,
            "product": PRODUCT,
            "price": PRICE,
            "confirm_timeout": config.confirm_timeout,
        }
        spec_file, out_file = work / f"spec-{index}.json", work / f"out-{index}.json"
        spec_file.write_text(json.dumps(spec))
        out_file.unlink(missing_ok=True)
        argv = [sys.executable, "-m", "shopmesh_bench.checkout_load", str(spec_file), str(out_file)]
        # Killed with the suite (a SIGTERM to `make bench` left them running, orphaned).
        process = subprocess.Popen([*PARENT_DEATH_PREFIX, *argv])
        running.append((process, out_file))
    roots = {**stack_roots(stack), **{f"load generator {i + 1}": p.pid for i, (p, _) in enumerate(running)}}
    time.sleep(max(0.0, start_at - time.time()))
    before, busy_before, began = procs.snapshot(roots), procs.machine_busy_seconds(), time.perf_counter()
    time.sleep(max(0.0, start_at + seconds - time.time()))
    after, busy_after = procs.snapshot(roots), procs.machine_busy_seconds()
    wall = time.perf_counter() - began
    checkouts: list[dict[str, Any]] = []
    generator_cpu = []
    for process, out_file in running:
        if process.wait(timeout=seconds + config.confirm_timeout + 300) != 0:
            raise RuntimeError(f"a checkout generator exited with {process.returncode}")
        output = json.loads(out_file.read_text())
        checkouts += output["checkouts"]
        generator_cpu.append(output["generator_cpu_seconds"] / output["generator_wall_seconds"])
    cpu = procs.cpu_between(before, after)
    cpu["machine"] = busy_after - busy_before
    ours = sum(v for k, v in cpu.items() if k != "machine")
    cpu["others"] = max(0.0, cpu["machine"] - ours)
    summary = report.summarise_step(checkouts, rate, seconds, {k: v * seconds / wall for k, v in cpu.items()})
    summary["generator_cpu_share_max"] = max(generator_cpu)
    return summary, after


def stack_cores(stack: Stack, window: float = SETTLE_WINDOW_SECONDS) -> float:
    """The stack's processes' CPU, in cores, over one window from now."""
    roots = stack_roots(stack)
    before = procs.snapshot(roots)
    time.sleep(window)
    return sum(procs.cpu_between(before, procs.snapshot(roots)).values()) / window


UNSETTLED_PAYMENTS = "SELECT count(*) FROM payments WHERE status IN ('PENDING', 'REQUIRES_ACTION')"


def wait_until_settled(stack: Stack, idle_cores: float) -> float:
    """Wait (bounded) until no payment is unsettled and the stack is back near idle; the seconds it took.

    An overloaded step leaves work behind (payments' reconciler completing timed-out
    payments, events in flight, the emulator's writes): measured by the next step, it
    would be charged to it.
    """
    payments = stack.postgres.dsn("payments")
    return settle(lambda: asyncio.run(_count(payments, UNSETTLED_PAYMENTS)), lambda: stack_cores(stack), idle_cores)


def checkout_benchmark(
    stack: Stack, config: SuiteConfig, accounts: Sequence[Account], work: Path, charts_dir: Path
) -> tuple[dict[str, Any], dict[str, dict[str, int]]]:
    """Every rate, BENCH_RUNS times; returns the checkout section and RSS per process at the highest rate."""
    inventory = stack.postgres.dsn("inventory")
    on_hand_before = asyncio.run(_on_hand(inventory))
    by_rate: dict[float, list[dict[str, Any]]] = {r: [] for r in (config.baseline_rate, *config.rates)}
    loaded_rss: dict[str, dict[str, int]] = {}
    idle_cores = stack_cores(stack, window=3 * SETTLE_WINDOW_SECONDS)
    log(f"the stack idles at {idle_cores:.2f} cores")
    settle_seconds: list[float] = []
    for run in range(config.runs):
        for index, rate in enumerate((config.baseline_rate, *config.rates)):
            seconds = min(config.seconds, 10.0) if index == 0 else config.seconds
            settle_seconds.append(wait_until_settled(stack, idle_cores))
            step, usage = run_step(stack, config, accounts, rate, seconds=seconds, seed=config.seed + index, work=work)
            by_rate[rate].append(step)
            if rate == config.rates[-1]:
                loaded_rss = memory_of(usage)
            log(
                f"run {run + 1}/{config.runs} {rate:g}/s: achieved {step['achieved']:.1f}/s, order p99 "
                f"{step['order_p99_ms']:.0f} ms, pay p99 {step['pay_p99_ms']:.0f} ms, confirm p50/p99 "
                f"{step['confirm_p50_ms']:.0f}/"
                f"{step['confirm_p99_ms']:.0f} ms, stuck {step['stuck']}, errors {step['errors']}, "
                f"generator CPU {step['generator_cpu_share_max']:.2f} core (settled {settle_seconds[-1]:.0f} s before)"
            )
    combined = {rate: report.combine_runs(steps) for rate, steps in by_rate.items()}
    for rate, steps in by_rate.items():
        combined[rate]["generator_cpu_share_max"] = max(s["generator_cpu_share_max"] for s in steps)
    seen_confirmed = sum(s["confirmed"] for steps in by_rate.values() for s in steps)
    final_check = recheck_unfinished(stack, accounts, [s for steps in by_rate.values() for s in steps])
    # What orders itself confirmed, not what the clients saw: a payment whose call failed at the
    # edge may still be completed by payments (its reconciler), and inventory commits for that order too.
    users = {account.user_id for account in accounts}
    ledger = settle_ledger(inventory, on_hand_before, lambda: asyncio.run(confirmed_orders(stack, users)))
    ledger["seen_confirmed"] = seen_confirmed + final_check["late"]
    loaded = [combined[r] for r in config.rates]
    knee_rate = report.find_knee(loaded)
    # The CPU picture at the knee; with no knee, at the lowest rate (where it already gave out).
    cpu_rate = knee_rate if knee_rate is not None else config.rates[0]
    cpu_seconds = {k: v for k, v in combined[cpu_rate]["cpu_seconds"].items() if not math.isnan(v)}
    shares = cpu_shares(cpu_seconds, config.seconds)
    charts = {"latency": "checkout-latency.png", "cpu": "checkout-cpu.png"}
    draw.latency_and_throughput(loaded, knee_rate, charts_dir / charts["latency"])
    draw.cpu_shares(shares, cpu_rate, charts_dir / charts["cpu"])
    section = {
        "seconds": config.seconds,
        "runs": config.runs,
        "seed": config.seed,
        "generators": config.generators,
        "accounts": len(accounts),
        "cores": os.cpu_count(),
        "baseline": combined[config.baseline_rate],
        "steps": loaded,
        "knee": knee_rate,
        "knee_cpu_rate": cpu_rate,
        "knee_cpu_shares": shares,
        "ledger": ledger,
        "final_check": final_check,
        "confirm_timeout": config.confirm_timeout,
        "idle_cores": idle_cores,
        "settle_seconds_max": max(settle_seconds),
        "failed_polls": sum(int(s["failed_polls"]) for steps in by_rate.values() for s in steps),
        "charts": {k: f"{charts_dir.name}/{v}" for k, v in charts.items()},
    }
    return section, loaded_rss


def recheck_unfinished(stack: Stack, accounts: Sequence[Account], steps: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """Re-read every order not CONFIRMED within the deadline: how many are still in a non-final state."""
    tokens = {a.user_id: a.token for a in accounts}
    unfinished = [(order_id, tokens[user_id]) for step in steps for order_id, user_id in step["unfinished"]]
    statuses = asyncio.run(final_statuses(f"127.0.0.1:{stack.settings.ports.edge}", unfinished))
    late = statuses.get("ORDER_STATUS_CONFIRMED", 0)
    cancelled = statuses.get("ORDER_STATUS_CANCELLED", 0)
    unanswered = statuses.get("unanswered", 0)
    return {
        "rechecked": len(unfinished),
        "late": late,
        "cancelled": cancelled,
        # An order GetOrder could not read is not known to be final: it counts as stuck, and is said apart.
        "unanswered": unanswered,
        "stuck_at_end": len(unfinished) - late - cancelled,
    }


async def confirmed_orders(stack: Stack, user_ids: set[str]) -> int:
    """The customers' orders whose latest version in orders' transition log is CONFIRMED (one unit each)."""
    storage = stack.settings.mesh.service("orders").storage
    assert storage is not None
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(stack.ferretdb.url, serverSelectionTimeoutMS=5000)
    latest: dict[str, tuple[int, str, str]] = {}
    try:
        transitions = client.get_database(storage.database).get_collection("orders_transitions")
        fields = {"aggregate": 1, "version": 1, "state.status": 1, "state.user_id": 1}
        async for document in transitions.find({}, fields):
            version = int(document["version"])
            if version > latest.get(document["aggregate"], (0, "", ""))[0]:
                state = document["state"]
                latest[document["aggregate"]] = (version, state["status"], state["user_id"])
    finally:
        await client.close()
    return sum(1 for _, status, user_id in latest.values() if status == "CONFIRMED" and user_id in user_ids)


def settle_ledger(inventory_dsn: str, on_hand_before: int, confirmed_now: Callable[[], int]) -> dict[str, Any]:
    """Wait (bounded) until inventory committed every confirmed order, then check the whole ledger."""
    deadline = time.monotonic() + LEDGER_SETTLE_SECONDS
    drop, confirmed = on_hand_before - asyncio.run(_on_hand(inventory_dsn)), confirmed_now()
    while drop != confirmed and time.monotonic() < deadline:
        time.sleep(1.0)
        drop, confirmed = on_hand_before - asyncio.run(_on_hand(inventory_dsn)), confirmed_now()
    checked = asyncio.run(ledger_check(inventory_dsn))
    return {
        "product": PRODUCT,
        "on_hand_drop": drop,
        "confirmed": confirmed,
        "exact": drop == confirmed,
        "consistent": checked.consistent,
        "products_checked": checked.checked,
    }


# ---- the other benchmarks ---------------------------------------------------------------------


def register_benchmark(stack: Stack, config: SuiteConfig) -> dict[str, Any]:
    hasher = service_hasher()
    hash_ms = argon2_hash_ms(hasher)
    edge = f"127.0.0.1:{stack.settings.ports.edge}"
    runs = []
    for run in range(config.runs):
        measured = asyncio.run(registration_rate(edge, config.register_seconds, config.register_concurrency))
        log(f"register run {run + 1}/{config.runs}: {measured['per_second']:.1f}/s p99 {measured['p99_ms']:.0f} ms")
        runs.append(measured)
    middle = {key: median([float(r[key]) for r in runs]) for key in ("per_second", "p50_ms", "p99_ms", "registrations")}
    middle["concurrency"] = config.register_concurrency
    return {
        "argon2": argon2_parameters(hasher),
        "hash_ms": hash_ms,
        "seconds": config.register_seconds,
        "runs": config.runs,
        "each_run": runs,
        "median": middle,
    }


def machine_benchmark(stack: Stack, config: SuiteConfig) -> dict[str, Any]:
    pg_runs, kafka_runs = [], []
    kafka = KafkaConfig(bootstrap_servers=stack.kafka.bootstrap, request_timeout_ms=10_000)
    for run in range(config.runs):
        pg_runs.append(
            postgres_commits(
                stack.installed.postgres_bin,
                stack.postgres.dsn("postgres"),
                stack.settings.ports.postgres,
                config.machine_seconds,
            )
        )
        kafka_runs.append(asyncio.run(kafka_round_trip(kafka, config.kafka_messages)))
        log(f"machine run {run + 1}/{config.runs}: postgres {pg_runs[-1]}, kafka {kafka_runs[-1]}")
    return {"postgres": _median_record(pg_runs), "kafka": _median_record(kafka_runs)}


def _median_record(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Numbers replaced by their median over runs; everything else from the first run."""
    combined = dict(runs[0])
    for key, value in runs[0].items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            combined[key] = median([float(r[key]) for r in runs])
    combined["runs"] = len(runs)
    return combined


def python_import_seconds() -> float:
    began = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import shopmesh_stack.stack"], check=True)
    return time.perf_counter() - began


def timed_up(stack: Stack) -> float:
    began = time.perf_counter()
    stack.up()
    return time.perf_counter() - began


# ---- output -----------------------------------------------------------------------------------


def write_section(latest: str, stem: str) -> None:
    """Replace (or append) the suite's section of BENCHMARKS.md; the rest of the file is not ours."""
    notes = NOTES_FILE.read_text() if NOTES_FILE.exists() else ""
    section = f"{SECTION_START}\n{notes}\n### Latest run: [{stem}](bench/results/{stem}.md)\n\n{latest}{SECTION_END}\n"
    text = BENCHMARKS_FILE.read_text() if BENCHMARKS_FILE.exists() else "# Benchmarks\n"
    if SECTION_START in text and SECTION_END in text:
        head, rest = text.split(SECTION_START, 1)
        tail = rest.split(SECTION_END, 1)[1].lstrip("\n")
        text = head + section + tail
    else:
        text = text.rstrip("\n") + "\n\n" + section
    BENCHMARKS_FILE.write_text(text)


def write_outputs(result: Mapping[str, Any], config: SuiteConfig, stem: str, charts_dir: Path) -> None:
    """The run's Markdown and data in bench/results/, and (unless turned off) BENCHMARKS.md's section."""
    markdown = report.render(result)
    # The JSON beside the charts, not in bench/results/ itself (bench-platform's history reads *.json there).
    (charts_dir / "result.json").write_text(json.dumps(result, indent=1, default=str) + "\n")
    (RESULTS_DIR / f"{stem}.md").write_text(markdown)
    # BENCHMARKS.md sits two directories up from the results: its links to the charts say so.
    if config.update_benchmarks:
        write_section(report.render(result, links_from="bench/results/"), stem)
    print(markdown)
    also = f", the suite's section of {BENCHMARKS_FILE}" if config.update_benchmarks else ""
    log(f"wrote {RESULTS_DIR / stem}.md, the data and charts in {charts_dir}{also}")


def main(argv: Sequence[str]) -> None:
    chosen = [a for a in argv if a] or list(BENCHMARKS)
    unknown = set(chosen) - set(BENCHMARKS)
    if unknown:
        raise SystemExit(f"unknown benchmark(s): {', '.join(sorted(unknown))}; choose from {', '.join(BENCHMARKS)}")
    config = SuiteConfig.from_env(os.environ)
    started_at = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H%M%SZ")
    stem = f"{started_at}-{config.label}"
    charts_dir = RESULTS_DIR / stem
    charts_dir.mkdir(parents=True, exist_ok=True)
    host = machine()
    log(f"{host['nproc']} cores ({host['cpu_model']}), load average {host['load_average']}; running {chosen}")
    log(f"config {asdict(config)}")
    settings = StackSettings.isolated(
        Path(tempfile.mkdtemp(prefix="shopmesh-bench-suite-")),
        {**BENCH_SERVICE_DEFAULTS, **dict(config.service_env)},
        edge_rate_limits=EDGE_RATE_LIMITS,
    )
    stack = Stack(settings)
    result: dict[str, Any] = {
        "label": config.label,
        "started_at": started_at,
        "machine": host,
        "config": asdict(config),
        "note": NOTE + "".join(f" Services ran with {name}={value}." for name, value in config.service_env),
    }
    work = settings.data_dir / "bench"
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(shutil.rmtree, settings.data_dir, ignore_errors=True)
        cleanup.callback(stack.down)
        log(f"starting a stack instance in {settings.data_dir}")
        first_up = timed_up(stack)
        work.mkdir(parents=True, exist_ok=True)
        idle_rss = memory_of(procs.snapshot(stack_roots(stack)))
        log(f"stack up in {first_up:.1f} s")
        if "register" in chosen:
            result["register"] = register_benchmark(stack, config)
        loaded_rss: dict[str, dict[str, int]] = {}
        load_rate = config.rates[-1]
        if "checkout" in chosen or "footprint" in chosen:
            accounts = asyncio.run(register_accounts(f"127.0.0.1:{settings.ports.edge}", config.accounts))
            log(f"registered {len(accounts)} customers")
            if "checkout" in chosen:
                result["checkout"], loaded_rss = checkout_benchmark(stack, config, accounts, work, charts_dir)
            else:
                load_rate = config.footprint_rate
                _, usage = run_step(
                    stack, config, accounts, load_rate, seconds=config.seconds, seed=config.seed, work=work
                )
                loaded_rss = memory_of(usage)
        if "machine" in chosen:
            result["machine_limits"] = machine_benchmark(stack, config)
        if "footprint" in chosen:
            stack.down()
            restart = timed_up(stack)
            result["footprint"] = {
                "idle_bytes": idle_rss,
                "load_bytes": loaded_rss,
                "load_rate": load_rate,
                "up_seconds": {"first": first_up, "restart": restart, "python_imports": python_import_seconds()},
                "chart": f"{charts_dir.name}/rss.png",
            }
            draw.rss(
                {k: v["pss"] or v["rss"] for k, v in idle_rss.items()},
                {k: v["pss"] or v["rss"] for k, v in loaded_rss.items()},
                charts_dir / "rss.png",
            )
    write_outputs(result, config, stem, charts_dir)


if __name__ == "__main__":
    main(sys.argv[1:])
