"""The harness's pure parts: load-generator output -> measurements, medians, ratios, Markdown.

Nothing here starts a process or reads a clock, so it is unit-tested on its own
(tests/stack/test_bench_results.py).
"""

from __future__ import annotations

import json
import math
import re
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

NANOS_PER_MS = 1_000_000


@dataclass(frozen=True)
class Measurement:
    """One load run against one target at one concurrency."""

    qps: float
    p50_ms: float
    p99_ms: float
    calls: int
    errors: int
    # Server CPU (user + system) per successful call, in ms; None if not measured.
    cpu_ms_per_call: float | None = None
    # CPU of a second process on the path (Envoy for REST), in ms per call.
    proxy_cpu_ms_per_call: float | None = None

    def with_cpu(self, server_cpu_seconds: float | None, proxy_cpu_seconds: float | None = None) -> Measurement:
        def per_call(seconds: float | None) -> float | None:
            if seconds is None or self.calls <= 0:
                return None
            return seconds * 1000 / self.calls

        return Measurement(
            self.qps,
            self.p50_ms,
            self.p99_ms,
            self.calls,
            self.errors,
            per_call(server_cpu_seconds),
            per_call(proxy_cpu_seconds),
        )


def parse_ghz(report: Mapping[str, Any]) -> Measurement:
    """A ghz `--format json` report; only OK calls count as served.

    When the duration ends ghz closes its connection under the calls in flight
    (they fail with "use of closed network connection"): those are not errors.
    """
    percentiles = {int(row["percentage"]): float(row["latency"]) for row in report.get("latencyDistribution") or ()}
    codes = report.get("statusCodeDistribution") or {}
    ok = int(codes.get("OK", 0))
    cut_off = sum(
        int(count)
        for message, count in (report.get("errorDistribution") or {}).items()
        if "use of closed network connection" in message
    )
    total = int(report.get("count", 0)) - cut_off
    seconds = float(report.get("total", 0)) / 1e9
    return Measurement(
        qps=ok / seconds if seconds > 0 else 0.0,
        p50_ms=percentiles.get(50, 0.0) / NANOS_PER_MS,
        p99_ms=percentiles.get(99, 0.0) / NANOS_PER_MS,
        calls=ok,
        errors=total - ok,
    )


_FINISHED = re.compile(r"finished in ([\d.]+)(m?s)")
_REQUESTS = re.compile(r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded")


def parse_h2load(summary: str, log_lines: Iterable[str]) -> Measurement:
    """h2load's summary (for the duration) and its --log-file (status, microseconds per request).

    Latencies come from the log (h2load's summary has no percentiles); only 2xx count.
    """
    finished = _FINISHED.search(summary)
    requests = _REQUESTS.search(summary)
    if finished is None or requests is None:
        raise ValueError(f"not an h2load summary: {summary[-300:]!r}")
    seconds = float(finished.group(1)) / (1000 if finished.group(2) == "ms" else 1)
    durations = []
    errors = 0
    for line in log_lines:
        fields = line.split("\t")
        if len(fields) < 3:
            continue
        if fields[1].startswith("2"):
            durations.append(int(fields[2]) / 1000)
        else:
            errors += 1
    done = int(requests.group(2))
    return Measurement(
        qps=len(durations) / seconds if seconds > 0 else 0.0,
        p50_ms=percentile(durations, 50),
        p99_ms=percentile(durations, 99),
        calls=len(durations),
        errors=max(errors, done - len(durations)),
    )


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (0.0 for no values)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(pct / 100 * len(ordered))))
    return ordered[rank - 1]


def median_of(runs: Sequence[Measurement]) -> Measurement:
    """Each field's median over the runs (fields independently)."""
    if not runs:
        raise ValueError("no runs")

    def med(values: Iterable[float | None]) -> float | None:
        present = [v for v in values if v is not None]
        return statistics.median(present) if present else None

    return Measurement(
        qps=statistics.median(r.qps for r in runs),
        p50_ms=statistics.median(r.p50_ms for r in runs),
        p99_ms=statistics.median(r.p99_ms for r in runs),
        calls=int(statistics.median(r.calls for r in runs)),
        errors=sum(r.errors for r in runs),
        cpu_ms_per_call=med(r.cpu_ms_per_call for r in runs),
        proxy_cpu_ms_per_call=med(r.proxy_cpu_ms_per_call for r in runs),
    )


@dataclass(frozen=True)
class Ratio:
    """`subject` over `reference`: >1 means more QPS / more latency / more CPU than the reference."""

    subject: str
    reference: str
    concurrency: int
    qps: float
    p50: float
    p99: float
    cpu: float | None
    p50_delta_ms: float


def ratio(subject: str, reference: str, concurrency: int, a: Measurement, b: Measurement) -> Ratio:
    def div(x: float | None, y: float | None) -> float | None:
        if x is None or y is None or y == 0:
            return None
        return x / y

    return Ratio(
        subject,
        reference,
        concurrency,
        qps=div(a.qps, b.qps) or 0.0,
        p50=div(a.p50_ms, b.p50_ms) or 0.0,
        p99=div(a.p99_ms, b.p99_ms) or 0.0,
        cpu=div(a.cpu_ms_per_call, b.cpu_ms_per_call),
        p50_delta_ms=a.p50_ms - b.p50_ms,
    )


# Which target each one is compared with (same message shape, same transport).
REFERENCES = (
    ("bare-mtls Health", "bare-plaintext Health"),
    ("platform Health", "bare-mtls Health"),
    ("platform GetMe", "bare-mtls GetMe"),
    ("REST /users/me", "bare-mtls GetMe"),
    ("REST /users/me", "platform GetMe"),
)


def ratios(medians: Mapping[str, Mapping[int, Measurement]]) -> list[Ratio]:
    """Every REFERENCES pair at every concurrency both were measured at."""
    found = []
    for subject, reference in REFERENCES:
        for concurrency, measured in sorted(medians.get(subject, {}).items()):
            base = medians.get(reference, {}).get(concurrency)
            if base is not None:
                found.append(ratio(subject, reference, concurrency, measured, base))
    return found


def interceptor_costs(medians: Mapping[str, Measurement], full: str = "full chain") -> list[dict[str, Any]]:
    """Per chain variant: QPS ratio to the full chain, and CPU per call saved by the removal."""
    reference = medians.get(full)
    rows = []
    for name, measured in medians.items():
        if reference is None:
            break
        saved = (
            reference.cpu_ms_per_call - measured.cpu_ms_per_call
            if reference.cpu_ms_per_call is not None and measured.cpu_ms_per_call is not None
            else None
        )
        rows.append(
            {
                "variant": name,
                "qps": measured.qps,
                "qps_vs_full": measured.qps / reference.qps if reference.qps else 0.0,
                "p50_ms": measured.p50_ms,
                "cpu_ms_per_call": measured.cpu_ms_per_call,
                "cpu_ms_saved_per_call": saved,
                "errors": measured.errors,
            }
        )
    return rows


@dataclass(frozen=True)
class Goal:
    """The issue's targets at concurrency 16."""

    health_qps_ratio: float = 0.85
    getme_qps_ratio: float = 0.6
    rest_p50_delta_ms: float = 1.0
    rest_qps_ratio: float = 0.9


def goal_verdicts(found: Sequence[Ratio], goal: Goal = Goal(), concurrency: int = 16) -> list[tuple[str, bool | None]]:
    """(what, met?) for each target; None if it was not measured."""
    by_pair = {(r.subject, r.reference): r for r in found if r.concurrency == concurrency}

    def check(pair: tuple[str, str], test: Any, text: str) -> tuple[str, bool | None]:
        measured = by_pair.get(pair)
        if measured is None:
            return f"{text}: not measured", None
        return f"{text}: {test(measured)[1]}", bool(test(measured)[0])

    return [
        check(
            ("platform Health", "bare-mtls Health"),
            lambda r: (r.qps >= goal.health_qps_ratio, f"{r.qps:.2f}x (goal >= {goal.health_qps_ratio}x)"),
            "Health/Check QPS vs bare",
        ),
        check(
            ("platform GetMe", "bare-mtls GetMe"),
            lambda r: (r.qps >= goal.getme_qps_ratio, f"{r.qps:.2f}x (goal >= {goal.getme_qps_ratio}x)"),
            "GetMe QPS vs bare",
        ),
        check(
            ("REST /users/me", "platform GetMe"),
            lambda r: (
                r.p50_delta_ms <= goal.rest_p50_delta_ms,
                f"{r.p50_delta_ms:+.2f} ms (goal <= +{goal.rest_p50_delta_ms} ms)",
            ),
            "REST p50 over direct gRPC",
        ),
        check(
            ("REST /users/me", "platform GetMe"),
            lambda r: (r.qps >= goal.rest_qps_ratio, f"{r.qps:.2f}x (goal >= {goal.rest_qps_ratio}x)"),
            "REST QPS vs direct gRPC",
        ),
    ]


def _fmt(value: float | None, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def markdown(report: Mapping[str, Any]) -> str:
    """The Markdown summary of a report (as written to JSON by the harness)."""
    machine = report["machine"]
    lines = [
        f"## {report['label']} ({report['started_at']})",
        "",
        f"Machine: {machine['cpu_model']}, {machine['nproc']} cores, load average at start "
        f"{' / '.join(format(x, '.2f') for x in machine['load_average'])}. "
        f"{report['runs']} runs of {report['duration_seconds']:g} s per point, medians; "
        f"{report['notes']}",
        "",
        "| target | conc | QPS | p50 ms | p99 ms | server CPU ms/call | errors |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for target, by_concurrency in report["medians"].items():
        for concurrency, m in sorted(by_concurrency.items(), key=lambda kv: int(kv[0])):
            cpu = _fmt(m["cpu_ms_per_call"], ".3f")
            if m.get("proxy_cpu_ms_per_call") is not None:
                cpu += f" (+ Envoy {m['proxy_cpu_ms_per_call']:.3f})"
            lines.append(
                f"| {target} | {concurrency} | {m['qps']:.0f} | {m['p50_ms']:.2f} | {m['p99_ms']:.2f} | {cpu} "
                f"| {m['errors']} |"
            )
    lines += [
        "",
        "Ratios (subject / reference; QPS > 1 is faster, latency and CPU > 1 are costlier):",
        "",
        "| subject | reference | conc | QPS | p50 | p99 | CPU/call | p50 delta ms |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in report["ratios"]:
        lines.append(
            f"| {r['subject']} | {r['reference']} | {r['concurrency']} | {r['qps']:.2f} | {r['p50']:.2f} "
            f"| {r['p99']:.2f} | {_fmt(r['cpu'])} | {r['p50_delta_ms']:+.2f} |"
        )
    if report.get("interceptors"):
        lines += [
            "",
            f"Interceptor cost: GetMe at concurrency {report['interceptor_concurrency']} on a benchmark-only users "
            "server (same code, chain built with one interceptor removed; `auth` replaced by a fixed caller):",
            "",
            "| chain | QPS | vs full | p50 ms | CPU ms/call | CPU saved ms/call | errors |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for row in report["interceptors"]:
            lines.append(
                f"| {row['variant']} | {row['qps']:.0f} | {row['qps_vs_full']:.2f} | {row['p50_ms']:.2f} "
                f"| {_fmt(row['cpu_ms_per_call'], '.3f')} | {_fmt(row['cpu_ms_saved_per_call'], '+.3f')} "
                f"| {row['errors']} |"
            )
    lines += ["", "Goal at concurrency 16:", ""]
    for text, met in report["goal"]:
        mark = {True: "met", False: "NOT met", None: "not measured"}[met]
        lines.append(f"- {text} — {mark}")
    return "\n".join(lines) + "\n"


def to_json(value: Any) -> str:
    def default(obj: Any) -> Any:
        if hasattr(obj, "__dataclass_fields__"):
            return asdict(obj)
        raise TypeError(type(obj).__name__)

    return json.dumps(value, default=default, indent=2)
