"""The suite's results: one checkout step's summary, medians over runs, and the Markdown report.

Pure: takes what the generators and /proc sampling produced, reads no clock and
starts nothing (tests/stack/test_bench_suite.py).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from shopmesh_bench.stats import KNEE_P99_SECONDS, RateResult, knee, median, percentile

# The suite's section of BENCHMARKS.md lies between these (bench-platform keeps it when it rewrites the file).
SECTION_START, SECTION_END = "<!-- bench-suite:start -->", "<!-- bench-suite:end -->"
SERVICES = ("users", "orders", "payments", "inventory", "notifications")
MIB = 1024 * 1024


def summarise_step(
    checkouts: Sequence[Mapping[str, Any]], offered: float, seconds: float, cpu: Mapping[str, float]
) -> dict[str, Any]:
    """One run of one offered rate: rates, latencies (ms), outcomes, CPU per process (seconds)."""
    confirmed = [c for c in checkouts if c["outcome"] == "confirmed"]
    orders_ms = [c["order_s"] * 1000 for c in checkouts if c["order_s"] is not None]
    pays_ms = [c["pay_s"] * 1000 for c in checkouts if c["pay_s"] is not None]
    confirms_ms = [c["confirm_s"] * 1000 for c in confirmed if c["confirm_s"] is not None]
    # From the payment's reply to CONFIRMED: the asynchronous part (outbox relay, Kafka, orders' consumer).
    sagas_ms = [(c["confirm_s"] - c["pay_s"]) * 1000 for c in confirmed if c["confirm_s"] is not None and c["pay_s"]]
    outcomes = Counter(c["outcome"] for c in checkouts)
    # Paid but not CONFIRMED within the generator's deadline: the saga left it behind (re-checked at the end).
    stuck = sum(n for outcome, n in outcomes.items() if outcome.startswith("not confirmed"))
    errors = {outcome: n for outcome, n in outcomes.items() if outcome != "confirmed"}
    return {
        "offered": offered,
        "arrivals": len(checkouts),
        "confirmed": len(confirmed),
        "achieved": len(confirmed) / seconds,
        "order_p50_ms": percentile(orders_ms, 0.5),
        "order_p99_ms": percentile(orders_ms, 0.99),
        "pay_p50_ms": percentile(pays_ms, 0.5),
        "pay_p99_ms": percentile(pays_ms, 0.99),
        "confirm_p50_ms": percentile(confirms_ms, 0.5),
        "confirm_p99_ms": percentile(confirms_ms, 0.99),
        "saga_p50_ms": percentile(sagas_ms, 0.5),
        "saga_p99_ms": percentile(sagas_ms, 0.99),
        "max_lag_ms": max((c["lag"] * 1000 for c in checkouts), default=0.0),
        "stuck": stuck,
        "unfinished": [(c["order_id"], c["user_id"]) for c in checkouts if c["outcome"].startswith("not confirmed")],
        "failed_polls": sum(int(c.get("failed_polls", 0)) for c in checkouts),
        "errors": errors,
        "cpu_seconds": dict(cpu),
        "services_cpu_ms_per_checkout": (
            sum(cpu.get(s, 0.0) for s in SERVICES) * 1000 / len(confirmed) if confirmed else math.nan
        ),
    }


NUMERIC = (
    "arrivals",
    "confirmed",
    "achieved",
    "order_p50_ms",
    "order_p99_ms",
    "pay_p50_ms",
    "pay_p99_ms",
    "confirm_p50_ms",
    "confirm_p99_ms",
    "saga_p50_ms",
    "saga_p99_ms",
    "max_lag_ms",
    "services_cpu_ms_per_checkout",
)


def combine_runs(steps: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Medians over the runs of one offered rate; stuck orders and errors are summed, never medianed."""
    combined: dict[str, Any] = {"offered": steps[0]["offered"], "runs": len(steps)}
    for key in NUMERIC:
        combined[key] = median([float(s[key]) for s in steps])
    # Each run's p99 as well: the runs share one emulator store that grows, so they can drift apart.
    combined["confirm_p99_ms_by_run"] = [float(s["confirm_p99_ms"]) for s in steps]
    combined["stuck"] = sum(int(s["stuck"]) for s in steps)
    errors: Counter[str] = Counter()
    for step in steps:
        errors.update(step["errors"])
    combined["errors"] = dict(errors)
    names = set().union(*(s["cpu_seconds"] for s in steps))
    combined["cpu_seconds"] = {n: median([s["cpu_seconds"].get(n, math.nan) for s in steps]) for n in sorted(names)}
    return combined


def find_knee(combined: Sequence[Mapping[str, Any]]) -> float | None:
    """The offered rate of the knee among combined steps, None if even the lowest misses it."""
    found = knee(
        [RateResult(c["offered"], c["achieved"], c["confirm_p99_ms"] / 1000, int(c["stuck"])) for c in combined]
    )
    return None if found is None else found.offered


def _ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.0f}"


def _f(value: float, spec: str = ".1f") -> str:
    return "-" if value is None or math.isnan(value) else format(value, spec)


def render(result: Mapping[str, Any], links_from: str = "") -> str:
    """The Markdown of one suite run (what was run only); chart links get `links_from` in front."""
    host = result["machine"]
    lines = [
        f"## {result['label']} ({result['started_at']})",
        "",
        f"Machine: {host['cpu_model']}, {host['nproc']} cores, {host['memory_gib']:.0f} GiB; load average at start "
        + " / ".join(f"{v:.2f}" for v in host["load_average"])
        + f"; {host['kernel']}. {result['note']}",
        "",
    ]
    if "checkout" in result:
        lines += _render_checkout(result["checkout"], links_from)
    if "register" in result:
        lines += _render_register(result["register"])
    if "machine_limits" in result:
        lines += _render_limits(result["machine_limits"])
    if "footprint" in result:
        lines += _render_footprint(result["footprint"], links_from)
    return "\n".join(lines) + "\n"


def _unanswered(final: Mapping[str, Any]) -> str:
    """Re-read orders GetOrder could not read: counted as stuck (not known final), and said apart."""
    return f", {final['unanswered']} could not be read (GetOrder failed twice)" if final.get("unanswered") else ""


def _render_checkout(checkout: Mapping[str, Any], links_from: str) -> list[str]:
    steps = checkout["steps"]
    baseline = checkout["baseline"]
    lines = [
        "### Checkout (order -> pay -> CONFIRMED, open loop)",
        "",
        f"{checkout['seconds']:g} s per rate, {checkout['runs']} run(s), medians; seed {checkout['seed']}; "
        f"{checkout['generators']} generator process(es), {checkout['accounts']} pre-registered customers. "
        f"Baseline: {baseline['offered']:g}/s (unloaded) in the same run.",
        *(
            [
                "",
                "Before each step the stack was let settle (no payment unsettled, CPU back near its idle "
                f"{checkout['idle_cores']:.2f} cores; the longest wait {checkout['settle_seconds_max']:.0f} s), "
                "so no step pays for the one before.",
            ]
            if "idle_cores" in checkout
            else []
        ),
        "",
        "| offered/s | achieved/s | order p50 / p99 ms | pay p50 / p99 ms | pay -> CONFIRMED p50 / p99 ms "
        "| p99 by run ms | p99 vs baseline | of which after the pay reply p50 / p99 ms "
        "| stuck | errors | services CPU ms/checkout | generator lag max ms |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: |",
    ]
    for step in [baseline, *steps]:
        ratio = step["confirm_p99_ms"] / baseline["confirm_p99_ms"] if baseline["confirm_p99_ms"] else math.nan
        errors = ", ".join(f"{k}: {v}" for k, v in sorted(step["errors"].items())) or "0"
        name = f"{step['offered']:g}" + (" (baseline)" if step is baseline else "")
        lines.append(
            f"| {name} | {_f(step['achieved'])} | {_ms(step['order_p50_ms'])} / {_ms(step['order_p99_ms'])} "
            f"| {_ms(step['pay_p50_ms'])} / {_ms(step['pay_p99_ms'])} "
            f"| {_ms(step['confirm_p50_ms'])} / {_ms(step['confirm_p99_ms'])} "
            f"| {' / '.join(_ms(v) for v in step.get('confirm_p99_ms_by_run', [])) or '-'} | {_f(ratio, '.2f')}x "
            f"| {_ms(step.get('saga_p50_ms', math.nan))} / {_ms(step.get('saga_p99_ms', math.nan))} "
            f"| {step['stuck']} | {errors} | {_f(step['services_cpu_ms_per_checkout'])} | {_f(step['max_lag_ms'])} |"
        )
    ledger = checkout["ledger"]
    final = checkout["final_check"]
    lines += [
        "",
        f"Orders stuck in a non-final state at the end: **{final['stuck_at_end']}** (must be 0) of "
        f"{final['rechecked']} not CONFIRMED within {checkout['confirm_timeout']:g} s and re-read after the runs "
        f"({final['late']} had been confirmed late, {final['cancelled']} cancelled"
        f"{_unanswered(final)}"
        "). GetOrder polls that failed "
        f"(and were retried): {checkout['failed_polls']}.",
        "",
        f"Stock ledger after the runs: {'consistent' if ledger['consistent'] else 'INCONSISTENT'} "
        f"({ledger['products_checked']} products); {ledger['product']} on hand fell by "
        f"{ledger['on_hand_drop']} for {ledger['confirmed']} orders CONFIRMED in orders "
        f"({'exact' if ledger['exact'] else 'NOT exact'}); the clients saw "
        f"{ledger.get('seen_confirmed', ledger['confirmed'])} confirmed (the others were paid after the client's "
        "pay call had failed, by payments' reconciler).",
        "",
    ]
    knee_rate = checkout["knee"]
    if knee_rate is None:
        lines.append(f"Knee: none (even the lowest rate missed payment -> CONFIRMED p99 < {KNEE_P99_SECONDS:g} s).")
    else:
        lines.append(
            f"Knee: **{knee_rate:g} checkouts/s** (the highest offered rate with payment -> CONFIRMED "
            f"p99 < {KNEE_P99_SECONDS:g} s and nothing stuck)."
        )
    shares = checkout["knee_cpu_shares"]
    ours = {k: v for k, v in shares.items() if k not in {"machine", "others"} and not k.startswith("load generator")}
    if ours:
        busiest = max(ours, key=lambda name: ours[name])
        lines += [
            "",
            f"Busiest of the stack's processes there: **{busiest}** ({ours[busiest]:.2f} cores); the whole machine "
            f"was {shares.get('machine', math.nan):.2f} of {checkout['cores']} cores busy, "
            f"{shares.get('others', math.nan):.2f} of it by other tenants.",
        ]
    if shares:
        lines += [
            "",
            f"CPU at {checkout['knee_cpu_rate']:g}/s, share of one core (the machine has {checkout['cores']}; "
            "`machine` is every tenant of the machine together, `others` what none of ours used):",
            "",
            "| process | CPU (cores) |",
            "| --- | ---: |",
            *(f"| {name} | {share:.2f} |" for name, share in shares.items()),
        ]
    lines += ["", f"![latency and throughput]({links_from}{checkout['charts']['latency']})", ""]
    lines += [f"![CPU share]({links_from}{checkout['charts']['cpu']})", ""]
    return lines


def _render_register(register: Mapping[str, Any]) -> list[str]:
    params = register["argon2"]
    median_run = register["median"]
    counted: Counter[str] = Counter()
    for run in register["each_run"]:
        counted.update(run["errors"])
    errors = ", ".join(f"{k}: {v}" for k, v in sorted(counted.items())) or "0"
    return [
        "### Registration",
        "",
        f"argon2{params['variant']}: time_cost {params['time_cost']}, memory_cost {params['memory_cost_kib']} KiB, "
        f"parallelism {params['parallelism']}, hash {params['hash_len']} B, salt {params['salt_len']} B.",
        "",
        "| what | per second | p50 ms | p99 ms | errors (all runs) |",
        "| --- | ---: | ---: | ---: | --- |",
        f"| RegisterUser through the edge, {median_run['concurrency']} clients, {register['seconds']:g} s "
        f"(median of {register['runs']}) | {_f(median_run['per_second'])} | {_ms(median_run['p50_ms'])} "
        f"| {_ms(median_run['p99_ms'])} | {errors} |",
        f"| baseline: one argon2id hash in the benchmark's process, one thread | "
        f"{_f(1000 / register['hash_ms'])} | {_ms(register['hash_ms'])} | - | - |",
        "",
    ]


def _render_limits(limits: Mapping[str, Any]) -> list[str]:
    pg, kafka = limits["postgres"], limits["kafka"]
    settings = ", ".join(f"{k}={v}" for k, v in pg["settings"].items())
    lines = [
        "### The machine's limits",
        "",
        "| what | value | baseline (same run) |",
        "| --- | ---: | ---: |",
        f"| PostgreSQL commits/s ({pg['tool']}; {settings}) | {_f(pg['commits_per_second'], '.0f')} "
        f"| {_f(pg.get('baseline_commits_per_second_synchronous_commit_off') or math.nan, '.0f')} "
        "(synchronous_commit=off) |",
        f"| Kafka produce -> consume round trip p50 / p99 ms ({kafka['messages']:.0f} records, idempotent acks=all "
        f"producer, consumer poll {kafka['consumer_poll_timeout_ms']:.0f} ms) | {_f(kafka['round_trip_p50_ms'])} / "
        f"{_f(kafka['round_trip_p99_ms'])} | {_f(kafka['baseline_ack_p50_ms'])} / "
        f"{_f(kafka['baseline_ack_p99_ms'])} (producer ack alone) |",
        "",
    ]
    return lines


def _render_footprint(footprint: Mapping[str, Any], links_from: str) -> list[str]:
    idle, load = footprint["idle_bytes"], footprint["load_bytes"]
    up = footprint["up_seconds"]

    def mib(entry: Mapping[str, int] | None, kind: str) -> str:
        return "-" if entry is None or not entry.get(kind) else f"{entry[kind] / MIB:.0f}"

    def total(entries: Mapping[str, Mapping[str, int]], kind: str) -> str:
        return f"{sum(e.get(kind, 0) for e in entries.values()) / MIB:.0f}"

    lines = [
        "### Footprint and start-up",
        "",
        f"Memory of each process tree (a component with its children), idle after start and under "
        f"{footprint['load_rate']:g} checkouts/s. RSS counts shared pages in every process that maps them "
        "(PostgreSQL's shared buffers once per backend), so its sum overstates; PSS divides them among their "
        "users and adds up to what the machine holds.",
        "",
        "| process | idle RSS MiB | idle PSS MiB | under load RSS MiB | under load PSS MiB |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name in idle:
        under = load.get(name)
        lines.append(
            f"| {name} | {mib(idle[name], 'rss')} | {mib(idle[name], 'pss')} | {mib(under, 'rss')} "
            f"| {mib(under, 'pss')} |"
        )
    lines += [
        f"| **total** | {total(idle, 'rss')} | {total(idle, 'pss')} | {total(load, 'rss')} | {total(load, 'pss')} |",
        "",
        f"Start-up (`make up`'s Stack.up(), components already installed): {up['first']:.1f} s with a fresh data "
        f"directory (initdb, migrations, topics), {up['restart']:.1f} s again with its data kept; baseline: "
        f"{up['python_imports']:.1f} s to start Python and import the stack's code.",
        "",
        f"![memory per process]({links_from}{footprint['chart']})",
        "",
    ]
    return lines
