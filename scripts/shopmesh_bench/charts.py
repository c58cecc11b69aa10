"""PNG charts of a suite run (matplotlib, installed only by `make bench`: dependency group `bench`)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt

MIB = 1024 * 1024


def latency_and_throughput(steps: Sequence[Mapping[str, Any]], knee: float | None, path: Path) -> None:
    """Latency percentiles (log scale) and achieved against offered checkouts/s."""
    offered = [s["offered"] for s in steps]
    figure, (latency, throughput) = plt.subplots(1, 2, figsize=(11, 4.2))
    for key, label, style in (
        ("order_p50_ms", "order p50", "o--"),
        ("order_p99_ms", "order p99", "o-"),
        ("confirm_p50_ms", "pay -> CONFIRMED p50", "s--"),
        ("confirm_p99_ms", "pay -> CONFIRMED p99", "s-"),
    ):
        values = [s[key] for s in steps]
        latency.plot(offered, [math.nan if v is None else v for v in values], style, label=label)
    latency.axhline(1000, color="grey", linewidth=0.8, linestyle=":", label="knee bound (1 s)")
    latency.set_yscale("log")
    latency.set_xlabel("offered checkouts/s")
    latency.set_ylabel("ms")
    latency.set_title("Latency (medians of runs)")
    latency.legend(fontsize=8)
    throughput.plot(offered, offered, ":", color="grey", label="offered")
    throughput.plot(offered, [s["achieved"] for s in steps], "o-", label="achieved (CONFIRMED/s)")
    if knee is not None:
        for axes in (latency, throughput):
            axes.axvline(knee, color="tab:red", linewidth=0.8, linestyle="--")
    throughput.set_xlabel("offered checkouts/s")
    throughput.set_ylabel("checkouts/s")
    throughput.set_title("Throughput" + (f" (knee {knee:g}/s)" if knee is not None else " (no knee)"))
    throughput.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


def cpu_shares(shares: Mapping[str, float], rate: float, path: Path) -> None:
    """Each process's CPU (cores) at one rate, largest first."""
    names = list(shares)
    figure, axes = plt.subplots(figsize=(8, 0.35 * len(names) + 1.2))
    axes.barh(names[::-1], [shares[n] for n in names][::-1], color="tab:blue")
    axes.set_xlabel("CPU (cores)")
    axes.set_title(f"CPU per process at {rate:g} checkouts/s")
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


def rss(idle: Mapping[str, int], load: Mapping[str, int], path: Path) -> None:
    """Memory (PSS, else RSS) per process tree, idle and under load."""
    names = list(idle)
    figure, axes = plt.subplots(figsize=(9, 0.4 * len(names) + 1.2))
    positions = range(len(names))
    axes.barh([p + 0.2 for p in positions], [idle[n] / MIB for n in names], height=0.4, label="idle")
    axes.barh([p - 0.2 for p in positions], [load.get(n, 0) / MIB for n in names], height=0.4, label="under load")
    axes.set_yticks(list(positions), names)
    axes.invert_yaxis()
    axes.set_xlabel("PSS (MiB)")
    axes.set_title("Memory per process tree (proportional set size)")
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
