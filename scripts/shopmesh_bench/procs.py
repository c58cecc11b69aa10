"""CPU time and resident memory of the stack's processes, read from /proc.

Each named root (a component's pid) counts with all its live descendants (PostgreSQL's
backends, a launcher's child) plus the CPU of children it already reaped, so a
component's CPU over an interval is the difference of two snapshots. The machine's
own busy time (/proc/stat) is read beside it, so what other tenants of a shared
machine used shows as the rest.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class Usage:
    """One process tree at one moment."""

    cpu_seconds: float
    rss_bytes: int
    processes: int
    # Proportional set size: shared pages (PostgreSQL's shared buffers) divided among their users,
    # so trees add up to what the machine holds; 0 where /proc/<pid>/smaps_rollup is unreadable.
    pss_bytes: int = 0


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Fields after the command name (which may hold spaces and parentheses), from `state` on.
    return text.rsplit(")", 1)[1].split()


def _parents() -> dict[int, int]:
    found: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat_fields(int(entry.name))) is not None:
            found[int(entry.name)] = int(fields[1])
    return found


def _family(root: int, parents: Mapping[int, int]) -> set[int]:
    children: dict[int, list[int]] = {}
    for child, parent in parents.items():
        children.setdefault(parent, []).append(child)
    family, frontier = {root}, [root]
    while frontier:
        for child in children.get(frontier.pop(), ()):
            if child not in family:
                family.add(child)
                frontier.append(child)
    return family


def snapshot(roots: Mapping[str, int]) -> dict[str, Usage]:
    """Usage of each named process tree now; a root that is gone is left out."""
    parents = _parents()
    usage: dict[str, Usage] = {}
    for name, root in roots.items():
        root_fields = _stat_fields(root)
        if root_fields is None:
            continue
        # cutime + cstime of the root: children it reaped (fields 16, 17 -> index 13, 14).
        ticks = int(root_fields[13]) + int(root_fields[14])
        rss_pages, pss, count = 0, 0, 0
        for pid in _family(root, parents):
            fields = _stat_fields(pid)
            if fields is None:
                continue
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
            rss_pages += int(fields[21])  # rss, in pages
            pss += _pss_bytes(pid)
            count += 1
        usage[name] = Usage(ticks / CLOCK_TICKS, rss_pages * PAGE_BYTES, count, pss)
    return usage


def _pss_bytes(pid: int) -> int:
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0
    for line in text.splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) * 1024  # kB
    return 0


def cpu_between(before: Mapping[str, Usage], after: Mapping[str, Usage]) -> dict[str, float]:
    """CPU seconds each tree used between two snapshots (trees present in both)."""
    return {name: max(0.0, after[name].cpu_seconds - before[name].cpu_seconds) for name in before.keys() & after.keys()}


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine (every core, every tenant) has been busy since boot."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS
