"""The checkout suite's pure parts: the open-loop schedule, percentiles, the knee, a step's
summary and the medians of runs, and the rendered report (the benchmark itself is `make bench`)."""

from __future__ import annotations

import itertools
import math
import statistics
from typing import Any

import pytest

from shopmesh_bench import report
from shopmesh_bench.stats import (
    RateResult,
    cpu_ms_per_checkout,
    cpu_shares,
    knee,
    median,
    open_loop_schedule,
    percentile,
)


def test_the_open_loop_schedule_is_seeded_poisson_at_the_offered_rate() -> None:
    first = open_loop_schedule(50.0, 200.0, seed=7)
    assert first == open_loop_schedule(50.0, 200.0, seed=7)
    assert first != open_loop_schedule(50.0, 200.0, seed=8)
    assert first == sorted(first) and first[0] > 0 and first[-1] < 200.0
    # 10,000 expected arrivals: within 3% of rate x duration.
    assert abs(len(first) - 10_000) < 300
    gaps = [b - a for a, b in itertools.pairwise(first)]
    # Exponential gaps: mean 1/rate and a coefficient of variation near 1 (not a fixed tick).
    assert statistics.mean(gaps) == pytest.approx(0.02, rel=0.05)
    assert statistics.stdev(gaps) / statistics.mean(gaps) == pytest.approx(1.0, rel=0.1)
    assert open_loop_schedule(0, 10, seed=1) == [] == open_loop_schedule(10, 0, seed=1)


def test_percentiles_interpolate_between_ranks() -> None:
    values = [float(v) for v in range(1, 101)]  # 1..100, shuffled order must not matter
    shuffled = values[50:] + values[:50]
    assert percentile(shuffled, 0.5) == pytest.approx(50.5)
    assert percentile(shuffled, 0.99) == pytest.approx(99.01)
    assert percentile(shuffled, 0.0) == 1.0 and percentile(shuffled, 1.0) == 100.0
    assert percentile([3.0], 0.99) == 3.0
    assert math.isnan(percentile([], 0.5))
    with pytest.raises(ValueError):
        percentile(values, 99)


def test_medians_leave_out_runs_that_measured_nothing() -> None:
    assert median([3.0, math.nan, 1.0, 2.0]) == 2.0
    assert math.isnan(median([math.nan]))


def test_the_knee_is_the_highest_healthy_rate_before_the_first_failure() -> None:
    def rate(offered: float, p99: float, stuck: int = 0) -> RateResult:
        return RateResult(offered, offered, p99, stuck)

    found = knee([rate(50, 0.8), rate(10, 0.2), rate(25, 0.4), rate(100, 2.5)])
    assert found is not None and found.offered == 50
    # A stuck order disqualifies a rate however fast it was; a later recovery is noise, not capacity.
    found = knee([rate(10, 0.2), rate(25, 0.3, stuck=1), rate(50, 0.4)])
    assert found is not None and found.offered == 10
    # p99 must be strictly below the bound, and a rate that measured nothing is not healthy.
    assert knee([rate(10, 1.0)]) is None
    assert knee([rate(10, math.nan)]) is None
    assert knee([]) is None


def test_cpu_shares_and_cost_per_checkout() -> None:
    shares = cpu_shares({"orders": 3.0, "envoy": 6.0, "users": 0.5}, wall_seconds=10.0)
    assert list(shares) == ["envoy", "orders", "users"]
    assert shares["envoy"] == pytest.approx(0.6)
    assert cpu_ms_per_checkout({"orders": 3.0, "payments": 1.0, "envoy": 9.0}, ("orders", "payments"), 200) == 20.0
    assert math.isnan(cpu_ms_per_checkout({"orders": 1.0}, ("orders",), 0))


def checkout(outcome: str, order_s: float | None, confirm_s: float | None, lag: float = 0.001) -> dict[str, Any]:
    pay_s = 0.05 if order_s is not None and not outcome.startswith("pay ") else None
    return {"outcome": outcome, "order_s": order_s, "pay_s": pay_s, "confirm_s": confirm_s, "lag": lag}


def test_a_step_summary_counts_stuck_orders_and_errors_apart() -> None:
    checkouts = [checkout("confirmed", 0.010 * (i + 1), 0.100 * (i + 1)) for i in range(10)]
    checkouts += [
        {**checkout("not confirmed (ORDER_STATUS_PENDING)", 0.02, None), "order_id": "o-1", "user_id": "u-1"},
        {**checkout("not confirmed (no answer)", 0.02, None), "order_id": "o-2", "user_id": "u-2", "failed_polls": 3},
        checkout("order RESOURCE_EXHAUSTED", None, None, lag=0.25),
        checkout("pay DEADLINE_EXCEEDED", 0.03, None),
    ]
    cpu = {"orders": 1.0, "payments": 0.5, "users": 0.25, "envoy": 2.0, "machine": 5.0}
    step = report.summarise_step(checkouts, offered=4.0, seconds=2.0, cpu=cpu)
    assert (step["arrivals"], step["confirmed"], step["achieved"]) == (14, 10, 5.0)
    assert step["confirm_p50_ms"] == pytest.approx(550.0)
    # What follows the payment's reply (0.05 s each here): the outbox relay, Kafka and the consumer.
    assert step["saga_p50_ms"] == pytest.approx(500.0)
    assert step["order_p99_ms"] == pytest.approx(
        percentile([c["order_s"] * 1000 for c in checkouts if c["order_s"]], 0.99)
    )
    # Paid but not confirmed in time: stuck, to be re-read at the end. A failed order or payment
    # call is an error, not a stuck order.
    assert step["stuck"] == 2
    assert step["unfinished"] == [("o-1", "u-1"), ("o-2", "u-2")]
    assert step["failed_polls"] == 3
    assert step["errors"] == {
        "not confirmed (ORDER_STATUS_PENDING)": 1,
        "not confirmed (no answer)": 1,
        "order RESOURCE_EXHAUSTED": 1,
        "pay DEADLINE_EXCEEDED": 1,
    }
    assert step["max_lag_ms"] == pytest.approx(250.0)
    # Our services only (not Envoy, not the machine): 1.75 s over 10 confirmed checkouts.
    assert step["services_cpu_ms_per_checkout"] == pytest.approx(175.0)


def test_runs_combine_into_medians_but_stuck_orders_add_up() -> None:
    steps = [
        report.summarise_step([checkout("confirmed", 0.01, c)] * 4, 2.0, 2.0, {"orders": o})
        for c, o in ((0.1, 1.0), (0.3, 3.0), (0.2, 2.0))
    ]
    steps[1] = {**steps[1], "stuck": 1, "errors": {"not confirmed (no answer)": 1}}
    combined = report.combine_runs(steps)
    assert combined["runs"] == 3 and combined["offered"] == 2.0
    assert combined["confirm_p99_ms"] == pytest.approx(200.0)
    # Each run's p99 is kept beside the median, in run order (a drifting run shows).
    assert combined["confirm_p99_ms_by_run"] == pytest.approx([100.0, 300.0, 200.0])
    assert combined["cpu_seconds"]["orders"] == 2.0
    assert combined["stuck"] == 1 and combined["errors"] == {"not confirmed (no answer)": 1}
    assert report.find_knee([combined]) is None
    steps[1] = {**steps[1], "stuck": 0}
    assert report.find_knee([report.combine_runs(steps)]) == 2.0


def suite_result() -> dict[str, Any]:
    def step(offered: float, p99: float, stuck: int = 0) -> dict[str, Any]:
        return {
            "offered": offered,
            "achieved": offered * 0.98,
            "order_p50_ms": 20.0,
            "order_p99_ms": 80.0,
            "pay_p50_ms": 60.0,
            "pay_p99_ms": 200.0,
            "confirm_p50_ms": p99 / 3,
            "confirm_p99_ms": p99,
            "confirm_p99_ms_by_run": [p99 * 0.9, p99, p99 * 1.2],
            "saga_p50_ms": p99 / 6,
            "saga_p99_ms": p99 / 2,
            "stuck": stuck,
            "errors": {"not confirmed (no answer)": stuck} if stuck else {},
            "services_cpu_ms_per_checkout": 41.5,
            "max_lag_ms": 1.2,
        }

    return {
        "label": "short",
        "started_at": "2026-11-25T190000Z",
        "note": "Budgets raised.",
        "machine": {
            "cpu_model": "Test CPU",
            "nproc": 2,
            "memory_gib": 24.0,
            "load_average": [1.0, 2.0, 3.0],
            "kernel": "Linux 6",
        },
        "checkout": {
            "seconds": 5.0,
            "runs": 1,
            "seed": 20,
            "generators": 2,
            "accounts": 20,
            "cores": 2,
            "baseline": step(2.0, 150.0),
            "steps": [step(10.0, 300.0), step(25.0, 900.0), step(50.0, 1500.0, stuck=2)],
            "knee": 25.0,
            "knee_cpu_rate": 25.0,
            "knee_cpu_shares": {"machine": 1.9, "localstripe": 0.71, "others": 0.5, "orders": 0.2},
            "ledger": {
                "product": "prod-123",
                "on_hand_drop": 120,
                "confirmed": 120,
                "seen_confirmed": 117,
                "exact": True,
                "consistent": True,
                "products_checked": 23,
            },
            "final_check": {"rechecked": 2, "late": 1, "cancelled": 0, "unanswered": 1, "stuck_at_end": 1},
            "confirm_timeout": 30.0,
            "idle_cores": 0.17,
            "settle_seconds_max": 66.0,
            "failed_polls": 4,
            "charts": {"latency": "run/checkout-latency.png", "cpu": "run/checkout-cpu.png"},
        },
        "footprint": {
            "idle_bytes": {
                "postgres": {"rss": 100 * report.MIB, "pss": 60 * report.MIB},
                "kafka": {"rss": 400 * report.MIB, "pss": 390 * report.MIB},
            },
            "load_bytes": {
                "postgres": {"rss": 150 * report.MIB, "pss": 80 * report.MIB},
                "kafka": {"rss": 420 * report.MIB, "pss": 0},
            },
            "load_rate": 50.0,
            "up_seconds": {"first": 61.0, "restart": 30.5, "python_imports": 1.2},
            "chart": "run/rss.png",
        },
    }


def test_the_report_renders_the_table_the_knee_the_ledger_and_chart_links() -> None:
    text = report.render(suite_result(), links_from="bench/results/")
    assert "## short (2026-11-25T190000Z)" in text
    assert "Test CPU, 2 cores, 24 GiB; load average at start 1.00 / 2.00 / 3.00" in text
    baseline = (
        "| 2 (baseline) | 2.0 | 20 / 80 | 60 / 200 | 50 / 150 | 135 / 150 / 180 | 1.00x | 25 / 75 "
        "| 0 | 0 | 41.5 | 1.2 |"
    )
    assert baseline in text
    assert "no payment unsettled, CPU back near its idle 0.17 cores; the longest wait 66 s" in text
    row = (
        "| 50 | 49.0 | 20 / 80 | 60 / 200 | 500 / 1500 | 1350 / 1500 / 1800 | 10.00x | 250 / 750 | 2 "
        "| not confirmed (no answer): 2 |"
    )
    assert row in text
    assert "Knee: **25 checkouts/s**" in text
    assert "stuck in a non-final state at the end: **1** (must be 0) of 2 not CONFIRMED within 30 s" in text
    # An order the re-read could not read is stuck as far as anyone knows, and the report says why.
    reread = "(1 had been confirmed late, 0 cancelled, 1 could not be read (GetOrder failed twice)). GetOrder polls"
    assert reread + " that failed (and were retried): 4." in text
    assert "| localstripe | 0.71 |" in text
    assert "Busiest of the stack's processes there: **localstripe** (0.71 cores)" in text
    assert "1.90 of 2 cores busy, 0.50 of it by other tenants" in text
    assert "consistent (23 products); prod-123 on hand fell by 120 for 120 orders CONFIRMED in orders (exact)" in text
    assert "the clients saw 117 confirmed" in text
    assert "![latency and throughput](bench/results/run/checkout-latency.png)" in text
    assert "| postgres | 100 | 60 | 150 | 80 |" in text
    # A PSS that could not be read shows as unknown, not as zero memory.
    assert "| kafka | 400 | 390 | 420 | - |" in text
    assert "| **total** | 500 | 450 | 570 | 80 |" in text
    assert "61.0 s with a fresh data directory" in text
    # Only what ran is rendered, and links are relative to where the report is written.
    assert "### Registration" not in text
    assert "](run/rss.png)" in report.render(suite_result())


def test_the_report_says_when_there_is_no_knee_or_the_ledger_is_off() -> None:
    result = suite_result()
    result["checkout"] = {
        **result["checkout"],
        "knee": None,
        "ledger": {**result["checkout"]["ledger"], "on_hand_drop": 119, "exact": False, "consistent": False},
    }
    text = report.render(result)
    assert "Knee: none (even the lowest rate missed payment -> CONFIRMED p99 < 1 s)." in text
    assert "INCONSISTENT" in text and "(NOT exact)" in text


def test_between_steps_the_suite_waits_for_unsettled_payments_and_a_stack_back_near_idle(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from shopmesh_bench import settling

    monkeypatch.setattr(settling, "SETTLE_WINDOW_SECONDS", 0.0)
    unsettled = iter([3, 1, 0, 0, 0, 0])
    cores = iter([0.9, 0.45, 0.29])
    settling.settle(lambda: next(unsettled), lambda: next(cores), idle_cores=0.2)
    # Payments first (the CPU is not even read while any is unsettled), then the CPU:
    # within 1.5x (or 0.1 core) of idle: 0.29 is, 0.45 is not.
    assert next(cores, None) is None and list(unsettled) == [0]

    asked: list[int] = []

    def busy() -> float:
        asked.append(1)
        return 1.0

    monkeypatch.setattr(settling, "SETTLE_DEADLINE_SECONDS", 0.0)
    # A stack that never settles is given up on at the deadline, not waited for forever.
    settling.settle(lambda: 0, busy, idle_cores=0.2)
    assert len(asked) == 1


def test_benchmarks_md_carries_the_checkout_notes_file_unchanged() -> None:
    """The suite rewrites its section from bench/CHECKOUT_NOTES.md: an edit made in BENCHMARKS.md alone
    is lost at the next run (round 4's optimisation table was, once), so the two must agree."""
    from shopmesh_stack.settings import REPO

    text = (REPO / "BENCHMARKS.md").read_text()
    section = text.split(report.SECTION_START + "\n", 1)[1].split(report.SECTION_END, 1)[0]
    notes_in_benchmarks = section.split("\n### Latest run: [", 1)[0]
    assert notes_in_benchmarks == (REPO / "bench" / "CHECKOUT_NOTES.md").read_text(), (
        "edit bench/CHECKOUT_NOTES.md, not BENCHMARKS.md's checkout section"
    )
