"""PyMongo's topology/pool lock survives callers cancelled while they wait on its condition (issue #18).

The harness drives PyMongo's own Lock and Condition the way its server selection
does (`async with lock: await _async_cond_wait(condition, timeout)`), with other
tasks contending for the lock and the waiters cancelled at random moments, as
gRPC deadlines cancel handlers while FerretDB is down. With PyMongo's original
`wait_for`-based wait on Python 3.11 the lock ends locked with no owner within a
few rounds (cancelled tasks never finish, "Lock is not acquired"); with the
platform's replacement every round ends with the lock free.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable

import pymongo.asynchronous.pool
import pymongo.asynchronous.topology
import pymongo.lock
from pymongo._asyncio_lock import Condition, Lock

from shopmesh_platform import mongo_condition_wait
from shopmesh_platform.mongo import MongoConfig, create_client

CondWait = Callable[[Condition, float | None], Awaitable[bool]]
ROUNDS = 40
STUCK_AFTER_S = 3.0


async def _selector(lock: Lock, condition: Condition, cond_wait: CondWait) -> None:
    async with lock:
        while True:
            await cond_wait(condition, random.uniform(0.0005, 0.003))


async def _holder(lock: Lock) -> None:
    while True:
        async with lock:
            await asyncio.sleep(random.uniform(0, 0.002))
        await asyncio.sleep(0)


async def rounds_until_wedged(cond_wait: CondWait, *, rounds: int = ROUNDS) -> int | None:
    """The round in which the lock wedged (a cancelled waiter never finished, or the lock stayed taken), or None."""
    random.seed(18)
    lock = Lock()
    condition = Condition(lock)
    loop = asyncio.get_running_loop()
    holders = [asyncio.ensure_future(_holder(lock)) for _ in range(3)]
    stuck: set[asyncio.Future[None]] = set()
    try:
        for round_ in range(rounds):
            waiters = [asyncio.ensure_future(_selector(lock, condition, cond_wait)) for _ in range(10)]
            for waiter in waiters:
                loop.call_later(random.uniform(0, 0.01), waiter.cancel)
            _, stuck = await asyncio.wait(waiters, timeout=STUCK_AFTER_S)
            if stuck:
                return round_
            try:
                async with asyncio.timeout(STUCK_AFTER_S):
                    async with lock:
                        pass
            except TimeoutError:
                return round_
        return None
    finally:
        await _release_wedged(lock, [*holders, *stuck])


async def _release_wedged(lock: Lock, tasks: list[asyncio.Future[None]]) -> None:
    # A waiter wedged in Condition.wait re-acquires the lock even when cancelled: free the lock until every
    # task ends, wait_for's orphaned inner tasks included (the test loop would otherwise never close).
    for task in tasks:
        task.cancel()
    others = asyncio.all_tasks() - {asyncio.current_task()}
    async with asyncio.timeout(STUCK_AFTER_S):
        while not all(task.done() for task in others):
            if lock.locked():
                lock.release()
            await asyncio.sleep(0.001)


async def test_the_platform_wait_keeps_the_lock_usable_under_random_cancellation() -> None:
    assert await rounds_until_wedged(mongo_condition_wait.cond_wait_in_caller_task) is None


async def test_pymongos_own_wait_wedges_the_lock_under_the_same_cancellation() -> None:
    # The harness must catch the bug it guards against, or the test above proves nothing.
    original = pymongo.lock.__dict__["_async_cond_wait"]
    if original is mongo_condition_wait.cond_wait_in_caller_task:  # installed by an earlier test in this process
        original = _pymongo_original_cond_wait
    assert await rounds_until_wedged(original) is not None


async def _pymongo_original_cond_wait(condition: Condition, timeout: float | None) -> bool:
    # A copy of pymongo.lock._async_cond_wait (4.20) for when the process already replaced it.
    try:
        return await asyncio.wait_for(condition.wait(), timeout)
    except TimeoutError:
        return False


def test_a_client_is_only_made_with_the_safe_wait_installed_everywhere_pymongo_uses_it() -> None:
    config = MongoConfig(url="mongodb://127.0.0.1:9/", database="unused", timeout_ms=100)
    client = create_client(config)
    assert mongo_condition_wait.installed()
    for module in (pymongo.asynchronous.topology, pymongo.asynchronous.pool):
        assert module.__dict__["_async_cond_wait"] is mongo_condition_wait.cond_wait_in_caller_task
    del client
