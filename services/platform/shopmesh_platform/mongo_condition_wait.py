"""Keep PyMongo's async topology and pool locks intact when a caller is cancelled (Python 3.11).

PyMongo (4.20) waits on its topology and pool condition variables with
`asyncio.wait_for(condition.wait(), timeout)` (`pymongo.lock._async_cond_wait`).
On Python 3.11 `wait_for` runs `condition.wait()` in a task of its own. When the
calling task is cancelled (a gRPC deadline, a readiness timeout) just as that
wait times out, `wait_for` gives up on the inner task before it has taken the
lock back: the caller's `async with lock` then releases a lock it does not hold
("RuntimeError: Lock is not acquired", or it frees another task's hold) and the
inner task re-acquires it afterwards and ends holding it. The lock stays locked
with no owner, and every later server selection, `ping` included, waits forever:
the orders service stayed wedged after FerretDB was killed (issue #18).

The replacement waits in the calling task itself under `asyncio.timeout`, so
`Condition.wait` re-acquires the lock in the task that will release it, however
it is cancelled. Python 3.12's `wait_for` does the same, so there is nothing to
replace there. `install()` fails loudly if PyMongo no longer has the hook, so an
upgrade cannot silently drop the fix.
"""

from __future__ import annotations

import asyncio
import sys
from types import ModuleType

import pymongo.asynchronous.pool
import pymongo.asynchronous.topology
import pymongo.lock
from pymongo._asyncio_lock import Condition

# The modules that imported PyMongo's helper by name, so each holds its own reference.
_USERS: tuple[ModuleType, ...] = (pymongo.lock, pymongo.asynchronous.topology, pymongo.asynchronous.pool)
_HOOK = "_async_cond_wait"


async def cond_wait_in_caller_task(condition: Condition, timeout: float | None) -> bool:
    """PyMongo's `_async_cond_wait` contract: True if notified, False on timeout; the lock held on return."""
    try:
        async with asyncio.timeout(timeout):
            return await condition.wait()
    except TimeoutError:
        return False


def needed() -> bool:
    """Python 3.12's `wait_for` already waits in the calling task."""
    return sys.version_info < (3, 12)


def install() -> None:
    """Replace PyMongo's condition wait in every module that uses it (idempotent)."""
    if not needed():
        return
    for module in _USERS:
        if not hasattr(module, _HOOK):
            raise RuntimeError(f"{module.__name__} has no {_HOOK}: PyMongo changed; re-check mongo_condition_wait")
        setattr(module, _HOOK, cond_wait_in_caller_task)


def installed() -> bool:
    return all(getattr(module, _HOOK) is cond_wait_in_caller_task for module in _USERS)
