"""The relay's doorbell: a ring wakes one wait, a ring before the wait counts, and rings are cleared."""

from __future__ import annotations

import asyncio

from shopmesh_platform.events.doorbell import Doorbell


async def test_a_ring_before_the_wait_returns_at_once_and_is_used_up() -> None:
    bell = Doorbell()
    bell.ring()
    bell.ring()  # two rings before one wait are one wake: the relay reads everything pending
    assert await asyncio.wait_for(bell.wait(60), timeout=10) is True
    assert await bell.wait(0.01) is False


async def test_a_ring_during_the_wait_wakes_it() -> None:
    bell = Doorbell()
    waiting = asyncio.ensure_future(bell.wait(60))
    await asyncio.sleep(0)  # let the wait start
    assert not waiting.done()
    bell.ring()
    assert await asyncio.wait_for(waiting, timeout=10) is True


async def test_without_a_ring_the_wait_ends_at_its_timeout() -> None:
    assert await Doorbell().wait(0.01) is False
