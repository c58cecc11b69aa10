"""The fault injector: one component at a time is SIGKILLed, left down a few seconds, then restarted.

The schedule comes from a seed and is printed before the run, so a failing run
can be repeated. SIGKILL goes to the component's whole process group (its
session: the stack starts each component in one), so a PostgreSQL's backends or
Envoy's keeper die with it, as on a crashed machine; nothing gets to shut down
cleanly. The restart is the stack's own (`Stack.start`: prepare, start, wait until
ready, provision, e.g. localstripe's webhook registered again), from a worker
thread. The faults are serial: the next one waits until the last has recovered.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass

from shopmesh_stack.components import Component
from shopmesh_stack.stack import Stack
from shopmesh_stack.waiting import StartError, wait_ready

DOWN_SECONDS = (2.0, 4.0)
GONE_DEADLINE_SECONDS = 30.0
# A restart slower than the component's own start timeout (a JVM on a loaded machine) is waited for
# this much longer while the process lives; one that dies or stays unready fails the run.
SLOW_RESTART_SECONDS = 240.0


@dataclass(frozen=True)
class Fault:
    """Kill `component` at `at` seconds into the load, restart it `down_for` seconds later."""

    at: float
    component: str
    down_for: float

    def describe(self) -> str:
        return f"t+{self.at:5.1f}s  SIGKILL {self.component:<14} restart after {self.down_for:.1f}s"


@dataclass(frozen=True)
class Recovery:
    """What happened to one fault."""

    fault: Fault
    killed_at: float
    restarted_at: float
    ready_at: float

    def describe(self) -> str:
        return (
            f"{self.fault.component:<14} killed t+{self.killed_at:5.1f}s, restarted t+{self.restarted_at:5.1f}s, "
            f"ready t+{self.ready_at:5.1f}s"
        )


def faultable(stack: Stack) -> list[str]:
    """Every component a fault may hit: the stores, Kafka, localstripe, Mailpit, the services, the edge."""
    return [component.name for component in stack.components if component is not stack.renewer]


def schedule(components: Sequence[str], *, seed: int, within_seconds: float) -> list[Fault]:
    """Each of `components` once, in a seeded order, at seeded times spread over `within_seconds`."""
    rng = random.Random(seed)
    order = list(components)
    rng.shuffle(order)
    slot = within_seconds / max(len(order), 1)
    return [
        Fault(round(index * slot + rng.uniform(0.1, 0.4) * slot, 1), name, round(rng.uniform(*DOWN_SECONDS), 1))
        for index, name in enumerate(order)
    ]


def pick(components: Sequence[str], count: int, *, seed: int) -> list[str]:
    """A seeded subset of `count` components (the short test's)."""
    return random.Random(seed).sample(list(components), count)


class FaultInjector:
    """Runs a schedule against a stack; records when each fault was injected and recovered."""

    def __init__(self, stack: Stack, faults: Sequence[Fault]) -> None:
        self._stack = stack
        self._faults = list(faults)
        self.recoveries: list[Recovery] = []

    def component(self, name: str) -> Component:
        return next(component for component in self._stack.components if component.name == name)

    async def run(self, started: float) -> None:
        """Inject the faults; `started` is the load's start (monotonic clock)."""
        for fault in self._faults:
            if (wait := started + fault.at - time.monotonic()) > 0:
                await asyncio.sleep(wait)
            component = self.component(fault.component)
            killed = time.monotonic() - started
            await asyncio.to_thread(kill, component)
            print(f"chaos: killed {fault.component} at t+{killed:.1f}s", flush=True)
            await asyncio.sleep(fault.down_for)
            restarted = time.monotonic() - started
            await asyncio.to_thread(self._restart, component)
            ready = time.monotonic() - started
            self.recoveries.append(Recovery(fault, killed, restarted, ready))
            print(f"chaos: {fault.component} back at t+{ready:.1f}s", flush=True)

    def _restart(self, component: Component) -> None:
        try:
            self._stack.start(component)
        except StartError:
            if not component.process.running():
                raise
            print(f"chaos: {component.name} is slow to come back; waiting up to {SLOW_RESTART_SECONDS:.0f}s more")
            wait_ready(component.name, component.ready, component.process, SLOW_RESTART_SECONDS)
            component.provision()

    @property
    def last_recovery(self) -> float | None:
        """When the last fault recovered, seconds after the load's start."""
        return max((r.ready_at for r in self.recoveries), default=None)


def kill(component: Component) -> None:
    """SIGKILL the component's process group and wait until it is gone (reaping it if it is our child)."""
    process = component.process
    pid = process.pid()
    if pid is None:
        raise RuntimeError(f"{component.name} is not running: nothing to kill")
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    deadline = time.monotonic() + GONE_DEADLINE_SECONDS
    while process.pid() is not None:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        if time.monotonic() > deadline:
            raise RuntimeError(f"{component.name} (pid {pid}) survived SIGKILL for {GONE_DEADLINE_SECONDS:.0f}s")
        time.sleep(0.05)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
