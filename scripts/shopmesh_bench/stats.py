"""The suite's arithmetic: open-loop arrival schedules, percentiles, medians of runs, the knee.

Nothing here starts a process or reads a clock, so it is unit-tested on its own
(tests/stack/test_bench_suite.py).
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

# The knee's latency bound: payment -> CONFIRMED p99 must stay below this (seconds).
KNEE_P99_SECONDS = 1.0


def open_loop_schedule(rate: float, seconds: float, seed: int) -> list[float]:
    """Arrival offsets (s from the start) of a Poisson process of `rate` per second over `seconds`.

    Open loop: arrivals are fixed in advance and never wait for earlier checkouts, so a
    slow system meets the same demand (no coordinated omission). The same seed gives the
    same schedule on every run and machine.
    """
    if rate <= 0 or seconds <= 0:
        return []
    draw = random.Random(seed)
    offsets: list[float] = []
    at = draw.expovariate(rate)
    while at < seconds:
        offsets.append(at)
        at += draw.expovariate(rate)
    return offsets


def percentile(values: Sequence[float], fraction: float) -> float:
    """The `fraction` quantile (0..1) with linear interpolation between ranks (numpy's default); nan if empty."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError("fraction must be within 0..1")
    if not values:
        return math.nan
    ordered = sorted(values)
    position = (len(ordered) - 1) * fraction
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def median(values: Sequence[float]) -> float:
    """The median of the finite values; nan when there are none (a run that measured nothing)."""
    finite = [v for v in values if not math.isnan(v)]
    return statistics.median(finite) if finite else math.nan


@dataclass(frozen=True)
class RateResult:
    """One offered checkout rate (medians over runs), as the knee reads it."""

    offered: float
    achieved: float
    confirm_p99_s: float
    stuck: int


def knee(results: Sequence[RateResult], bound_s: float = KNEE_P99_SECONDS) -> RateResult | None:
    """The highest offered rate that held payment -> CONFIRMED p99 < bound with nothing stuck.

    Rates are read in ascending order and the first one that fails ends the search: a rate
    that passes only above a failing one is noise, not capacity. None when the lowest fails.
    """
    best: RateResult | None = None
    for result in sorted(results, key=lambda r: r.offered):
        healthy = result.stuck == 0 and not math.isnan(result.confirm_p99_s) and result.confirm_p99_s < bound_s
        if not healthy:
            break
        best = result
    return best


def cpu_shares(cpu_seconds: Mapping[str, float], wall_seconds: float) -> dict[str, float]:
    """Each process's CPU as a share of one core over the interval (1.0 = one core busy), largest first."""
    if wall_seconds <= 0:
        raise ValueError("wall_seconds must be positive")
    shares = {name: used / wall_seconds for name, used in cpu_seconds.items()}
    return dict(sorted(shares.items(), key=lambda item: item[1], reverse=True))


def cpu_ms_per_checkout(cpu_seconds: Mapping[str, float], services: Sequence[str], checkouts: int) -> float:
    """Our services' CPU (sum over `services`) per completed checkout, in ms; nan when none completed."""
    if checkouts <= 0:
        return math.nan
    return sum(cpu_seconds.get(name, 0.0) for name in services) * 1000 / checkouts
