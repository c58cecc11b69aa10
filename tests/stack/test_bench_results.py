"""The benchmark harness's pure parts: parsing the load generators, medians, ratios, the goal."""

from __future__ import annotations

import json

import pytest

from shopmesh_bench.results import (
    Measurement,
    goal_verdicts,
    interceptor_costs,
    markdown,
    median_of,
    parse_ghz,
    parse_h2load,
    percentile,
    ratios,
    to_json,
)

GHZ_REPORT = {
    "count": 1000,
    "total": 2_000_000_000,
    "latencyDistribution": [
        {"percentage": 50, "latency": 1_500_000},
        {"percentage": 99, "latency": 9_000_000},
    ],
    "statusCodeDistribution": {"OK": 985, "Unavailable": 15},
    "errorDistribution": {
        "rpc error: code = Unavailable desc = no healthy upstream": 10,
        "rpc error: code = Unavailable desc = error reading from server: read tcp: use of closed network connection": 5,
    },
}

H2LOAD_SUMMARY = """
finished in 2.00s, 150.00 req/s, 30.00KB/s
requests: 300 total, 300 started, 300 done, 299 succeeded, 1 failed, 0 errored, 0 timeout
status codes: 299 2xx, 0 3xx, 1 4xx, 0 5xx
"""


def test_ghz_report_counts_only_ok_calls_and_those_cut_off_at_the_end_are_no_errors() -> None:
    measured = parse_ghz(GHZ_REPORT)
    assert measured.qps == pytest.approx(492.5)
    assert (measured.p50_ms, measured.p99_ms) == (1.5, 9.0)
    assert (measured.calls, measured.errors) == (985, 10)


def test_h2load_latencies_come_from_the_log_and_only_2xx_count() -> None:
    log = [f"1700000000{i:06d}\t200\t{(i + 1) * 1000}" for i in range(299)] + ["1700000000999999\t401\t50"]
    measured = parse_h2load(H2LOAD_SUMMARY, log)
    assert measured.qps == pytest.approx(149.5)
    assert measured.p50_ms == 150.0
    assert measured.p99_ms == 297.0
    assert (measured.calls, measured.errors) == (299, 1)


def test_h2load_output_without_a_summary_is_refused() -> None:
    with pytest.raises(ValueError, match="not an h2load summary"):
        parse_h2load("connection refused", [])


def test_cpu_per_call_divides_by_served_calls() -> None:
    measured = Measurement(qps=100, p50_ms=1, p99_ms=2, calls=400, errors=0).with_cpu(0.5, 0.1)
    assert measured.cpu_ms_per_call == pytest.approx(1.25)
    assert measured.proxy_cpu_ms_per_call == pytest.approx(0.25)


def test_percentile_is_nearest_rank() -> None:
    assert percentile([5.0, 1.0, 3.0, 2.0, 4.0], 50) == 3.0
    assert percentile([1.0, 2.0], 99) == 2.0
    assert percentile([], 50) == 0.0


def test_median_is_taken_per_field() -> None:
    runs = [
        Measurement(qps=100, p50_ms=3, p99_ms=9, calls=10, errors=1, cpu_ms_per_call=0.5),
        Measurement(qps=300, p50_ms=1, p99_ms=7, calls=30, errors=0, cpu_ms_per_call=None),
        Measurement(qps=200, p50_ms=2, p99_ms=8, calls=20, errors=2, cpu_ms_per_call=0.7),
    ]
    median = median_of(runs)
    assert (median.qps, median.p50_ms, median.p99_ms, median.calls) == (200, 2, 8, 20)
    assert median.errors == 3
    assert median.cpu_ms_per_call == pytest.approx(0.6)


def _m(qps: float, p50: float, cpu: float | None = None) -> Measurement:
    return Measurement(qps=qps, p50_ms=p50, p99_ms=p50 * 3, calls=int(qps), errors=0, cpu_ms_per_call=cpu)


MEDIANS = {
    "bare-plaintext Health": {16: _m(2400, 1.0, 0.4)},
    "bare-mtls Health": {16: _m(2000, 1.0, 0.5)},
    "bare-mtls GetMe": {16: _m(2000, 1.2, 0.5)},
    "platform Health": {16: _m(1800, 1.1, 0.6)},
    "platform GetMe": {16: _m(1000, 2.0, 1.5)},
    "REST /users/me": {16: _m(950, 2.5, 1.6)},
}


def test_ratios_compare_each_target_with_its_reference_at_the_same_concurrency() -> None:
    found = {(r.subject, r.reference, r.concurrency): r for r in ratios(MEDIANS)}
    health = found[("platform Health", "bare-mtls Health", 16)]
    assert health.qps == pytest.approx(0.9)
    assert health.cpu == pytest.approx(1.2)
    rest = found[("REST /users/me", "platform GetMe", 16)]
    assert rest.qps == pytest.approx(0.95)
    assert rest.p50_delta_ms == pytest.approx(0.5)


def test_goal_verdicts_name_each_target_and_whether_it_is_met() -> None:
    verdicts = goal_verdicts(ratios(MEDIANS))
    assert [met for _, met in verdicts] == [True, False, True, True]
    assert "0.50x" in verdicts[1][0]


def test_interceptor_costs_are_relative_to_the_full_chain() -> None:
    rows = interceptor_costs({"full chain": _m(1000, 2.0, 1.5), "without metrics": _m(1250, 1.8, 1.2)})
    without = next(row for row in rows if row["variant"] == "without metrics")
    assert without["qps_vs_full"] == pytest.approx(1.25)
    assert without["cpu_ms_saved_per_call"] == pytest.approx(0.3)


def test_markdown_summary_renders_a_json_round_tripped_report() -> None:
    found = ratios(MEDIANS)
    report = json.loads(
        to_json(
            {
                "label": "unit",
                "started_at": "2026-01-01T000000Z",
                "machine": {"nproc": 2, "cpu_model": "Test CPU", "load_average": [1.0, 2.0, 3.0]},
                "runs": 3,
                "duration_seconds": 5.0,
                "notes": "test.",
                "medians": {name: {str(c): m for c, m in by_c.items()} for name, by_c in MEDIANS.items()},
                "ratios": found,
                "interceptor_concurrency": 16,
                "interceptors": interceptor_costs({"full chain": _m(1000, 2.0, 1.5)}),
                "goal": goal_verdicts(found),
            }
        )
    )
    text = markdown(report)
    assert "| platform Health | bare-mtls Health | 16 | 0.90 |" in text
    assert "GetMe QPS vs bare: 0.50x (goal >= 0.6x) — NOT met" in text
    assert "| full chain | 1000 | 1.00 |" in text
