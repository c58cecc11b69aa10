"""Poll-with-deadline helpers: tests wait for conditions, never for fixed times."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def eventually(
    probe: Callable[[], Awaitable[T]], condition: Callable[[T], bool], *, timeout: float, interval: float = 0.05
) -> T:
    """Call `probe` until `condition(result)` holds; fail with the last result at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        result = await probe()
        if condition(result):
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s; last result: {result!r}")
        await asyncio.sleep(interval)


def wait_for(condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.1) -> float:
    """Poll `condition()` until true; returns the seconds it took, fails after `timeout`."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{what}: not within {timeout}s")
        time.sleep(interval)
    return time.monotonic() - started
