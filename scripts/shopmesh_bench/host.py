"""What every benchmark prints beside its numbers: a log line prefix and the machine it ran on."""

from __future__ import annotations

import contextlib
import os
import platform
from pathlib import Path
from typing import Any


def log(message: str) -> None:
    print(f"bench: {message}", flush=True)


def cpu_model() -> str:
    model = platform.processor() or "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return model


def machine() -> dict[str, Any]:
    """Cores, CPU model and load average (what bench-platform's history shows)."""
    return {"nproc": os.cpu_count(), "cpu_model": cpu_model(), "load_average": list(os.getloadavg())}


def machine_in_full() -> dict[str, Any]:
    """`machine()` with memory, kernel and Python (the checkout suite's report)."""
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu_model(),
        "memory_gib": memory / 1024**3,
        "kernel": f"Linux {platform.release()}",
        "python": platform.python_version(),
        "load_average": list(os.getloadavg()),
    }
