"""A service built on the Runtime, for the drain test: `python -m tests.integration.runtime_worker`.

It is the inventory service of a test mesh (SHOPMESH_MESH_FILE, SHOPMESH_TOPICS_FILE)
whose consumer `drain-test` reads SHOPMESH_TEST_TOPIC with an effect that takes
SHOPMESH_TEST_EFFECT_SECONDS. It prints `APPLYING <event id>` / `APPLIED <event id>`
around the effect and `EXITING` when serve() has returned.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import asyncpg

from shopmesh.user.v1 import events_pb2 as user_events
from shopmesh_platform.events.consumer import EventContext, Handlers
from shopmesh_platform.runner import run_service
from shopmesh_platform.runtime import Runtime
from tests.integration.events_support import record_effect


class SlowEffect:
    def __init__(self, seconds: float) -> None:
        self._seconds = seconds

    async def apply(self, event: user_events.UserRegistered, context: EventContext[asyncpg.Connection]) -> None:
        print(f"APPLYING {context.event_id}", flush=True)
        await asyncio.sleep(self._seconds)
        await record_effect(event, context)
        print(f"APPLIED {context.event_id}", flush=True)


async def serve(env: Mapping[str, str]) -> None:
    runtime = Runtime.from_env("inventory", env)
    await runtime.postgres()
    handlers: Handlers[asyncpg.Connection] = Handlers()
    handlers.register(user_events.UserRegistered, SlowEffect(float(env["SHOPMESH_TEST_EFFECT_SECONDS"])).apply)
    consumer = runtime.consumer("drain-test", handlers, topics=[env["SHOPMESH_TEST_TOPIC"]])
    await runtime.serve([], consumers=[consumer])  # health and reflection only
    print("EXITING", flush=True)


if __name__ == "__main__":
    run_service(serve)
