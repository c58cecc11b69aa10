"""Registrations through the edge's gRPC listener: the checkout's pre-registered accounts and the
registration benchmark (closed loop at a fixed concurrency: argon2id, not the client, sets the pace).

The baseline measured beside it is one argon2id hash with the users service's own
parameters in this process: registrations/s cannot beat cores / hash time.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from dataclasses import dataclass
from typing import Any

import grpc
from argon2 import PasswordHasher, extract_parameters
from grpc import aio

from shopmesh.user.v1 import user_service_pb2 as users_pb
from shopmesh.user.v1 import user_service_pb2_grpc as users_grpc
from shopmesh_bench.stats import percentile
from shopmesh_users.passwords import Passwords

PASSWORD = "bench password 42"
SETUP_ATTEMPTS = 5


@dataclass(frozen=True)
class Account:
    user_id: str
    token: str


async def _register(stub: Any, tag: str) -> Account:
    reply = await stub.RegisterUser(
        users_pb.RegisterUserRequest(
            email=f"bench-{tag}-{uuid.uuid4().hex[:12]}@example.com",
            password=PASSWORD,
            first_name="Ada",
            last_name="Lovelace",
        ),
        timeout=60,
    )
    return Account(reply.user.id, reply.token)


async def register_accounts(edge: str, count: int, concurrency: int = 2) -> list[Account]:
    """`count` new accounts with their tokens (the checkout's customers)."""
    async with aio.insecure_channel(edge) as channel:
        stub = users_grpc.UserServiceStub(channel)  # type: ignore[no-untyped-call]
        gate = asyncio.Semaphore(concurrency)

        async def one(index: int) -> Account:
            async with gate:
                for _ in range(SETUP_ATTEMPTS - 1):
                    # A busy machine can push one argon2id past the edge's 5 s deadline: try again.
                    with contextlib.suppress(aio.AioRpcError):
                        return await _register(stub, f"customer{index}")
                return await _register(stub, f"customer{index}")

        return list(await asyncio.gather(*(one(i) for i in range(count))))


async def registration_rate(edge: str, seconds: float, concurrency: int) -> dict[str, Any]:
    """Closed loop: `concurrency` clients register new accounts back to back for `seconds`."""
    latencies: list[float] = []
    errors: dict[str, int] = {}
    async with aio.insecure_channel(edge) as channel:
        stub = users_grpc.UserServiceStub(channel)  # type: ignore[no-untyped-call]
        with contextlib.suppress(aio.AioRpcError):
            await _register(stub, "warmup")
        ends = time.perf_counter() + seconds

        async def client(index: int) -> None:
            while time.perf_counter() < ends:
                started = time.perf_counter()
                try:
                    await _register(stub, f"rate{index}")
                except aio.AioRpcError as error:
                    code: grpc.StatusCode = error.code()
                    errors[code.name] = errors.get(code.name, 0) + 1
                    continue
                latencies.append(time.perf_counter() - started)

        began = time.perf_counter()
        await asyncio.gather(*(client(i) for i in range(concurrency)))
        wall = time.perf_counter() - began
    return {
        "concurrency": concurrency,
        "seconds": wall,
        "registrations": len(latencies),
        "per_second": len(latencies) / wall,
        "p50_ms": percentile(latencies, 0.5) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "errors": errors,
    }


def service_hasher() -> PasswordHasher:
    """A hasher with the parameters the users service's own code hashes with (read back from its hash)."""
    produced = asyncio.run(Passwords().hash(PASSWORD))
    return PasswordHasher.from_parameters(extract_parameters(produced))


def argon2_parameters(hasher: PasswordHasher) -> dict[str, int | str]:
    return {
        "variant": hasher.type.name.lower(),
        "time_cost": hasher.time_cost,
        "memory_cost_kib": hasher.memory_cost,
        "parallelism": hasher.parallelism,
        "hash_len": hasher.hash_len,
        "salt_len": hasher.salt_len,
    }


def argon2_hash_ms(hasher: PasswordHasher, samples: int = 10) -> float:
    """Median time of one hash in this process, on one thread (the baseline)."""
    timings = []
    for _ in range(samples):
        started = time.perf_counter()
        hasher.hash(PASSWORD)
        timings.append(time.perf_counter() - started)
    return percentile(timings, 0.5) * 1000
