"""SO_REUSEPORT, explicit both ways: with SHOPMESH_REUSE_PORT=on a replacement listens on
the ports of the process it replaces and answers once that one has drained; without it
the second bind fails. The replacement's own probe port tells its health alone."""

from __future__ import annotations

import asyncio
import urllib.request

import pytest
from grpc import aio

from shopmesh.inventory.v1 import inventory_service_pb2 as inventory_pb2
from shopmesh.inventory.v1 import inventory_service_pb2_grpc as inventory_grpc
from shopmesh_platform.channel import create_channel
from tests.conftest import ConfigFactory
from tests.platform.sample_service import SampleInventory, build
from tests.polling import eventually


def metric(port: int, name: str) -> float | None:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(f"{name} "):
                return float(line.split()[1])
    return None


async def get_product(port: int, product: str) -> str:
    # A new channel: a new connection, which the kernel gives to one of the listeners.
    async with aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        reply = await inventory_grpc.InventoryServiceStub(channel).GetProduct(
            inventory_pb2.GetProductRequest(id=product), timeout=10
        )
    return str(reply.id)


async def test_a_replacement_shares_the_ports_and_serves_once_the_old_one_drained(make_config: ConfigFactory) -> None:
    old_servicer, new_servicer = SampleInventory(), SampleInventory()
    old = build(make_config(SHOPMESH_REUSE_PORT="on", SHOPMESH_DRAIN_GRACE_SECONDS="1"), old_servicer)
    await old.start()
    new = None
    try:
        assert metric(old.metrics_port, "health_serving") == 1.0
        new = build(
            make_config(
                SHOPMESH_REUSE_PORT="on",
                SHOPMESH_GRPC_PORT=str(old.grpc_port),
                SHOPMESH_METRICS_PORT=str(old.metrics_port),
                SHOPMESH_PROBE_PORT="0",
                SHOPMESH_DRAIN_GRACE_SECONDS="1",
            ),
            new_servicer,
        )
        assert new.grpc_port == old.grpc_port
        await new.start()
        assert new.metrics_port == old.metrics_port
        assert new.probe_port is not None and new.probe_port != new.metrics_port
        assert metric(new.probe_port, "health_serving") == 1.0

        await old.drain()
        assert metric(new.probe_port, "health_serving") == 1.0
        for attempt in range(5):
            assert await get_product(old.grpc_port, f"prod-{attempt}") == f"prod-{attempt}"
        assert sum(new_servicer.attempts.values()) == 5
        assert metric(new.metrics_port, "health_serving") == 1.0  # the shared metrics port: the new one's now
    finally:
        await old.drain()
        if new is not None:
            await new.drain()
    assert new is not None and metric_unreachable(new.probe_port)


def metric_unreachable(port: int | None) -> bool:
    assert port is not None
    try:
        metric(port, "health_serving")
    except OSError:
        return True
    return False


async def test_without_reuse_port_a_second_process_cannot_take_the_port(make_config: ConfigFactory) -> None:
    first = build(make_config(SHOPMESH_DRAIN_GRACE_SECONDS="1"), SampleInventory())
    await first.start()
    try:
        assert not first.config.reuse_port
        with pytest.raises(RuntimeError):
            build(make_config(SHOPMESH_GRPC_PORT=str(first.grpc_port), SHOPMESH_REUSE_PORT="on"), SampleInventory())
    finally:
        await first.drain()


async def test_health_serving_gauge_drops_when_draining(make_config: ConfigFactory) -> None:
    server = build(make_config(SHOPMESH_PROBE_PORT="0", SHOPMESH_DRAIN_GRACE_SECONDS="1"), SampleInventory())
    await server.start()
    assert server.probe_port is not None
    assert metric(server.probe_port, "health_serving") == 1.0
    await server.stop_taking_calls()
    assert metric(server.probe_port, "health_serving") == 0.0
    await server.stop()


async def test_a_service_channel_rides_the_hand_over_without_a_failed_call(make_config: ConfigFactory) -> None:
    """A caller's channel (shopmesh_platform.channel) keeps calling through a hand-over:
    the call in flight on the old process finishes there, the next ones reach the successor."""
    old_servicer, new_servicer = SampleInventory(), SampleInventory()
    old = build(make_config(SHOPMESH_REUSE_PORT="on", SHOPMESH_DRAIN_GRACE_SECONDS="10"), old_servicer)
    await old.start()
    new_config = make_config(
        SHOPMESH_REUSE_PORT="on",
        SHOPMESH_GRPC_PORT=str(old.grpc_port),
        SHOPMESH_METRICS_PORT=str(old.metrics_port),
        SHOPMESH_DRAIN_GRACE_SECONDS="1",
    )
    new = None
    caller = make_config("orders")
    failures: list[str] = []
    calls = 0
    try:
        async with create_channel(caller, "inventory", address=f"127.0.0.1:{old.grpc_port}") as channel:
            stub = inventory_grpc.InventoryServiceStub(channel)
            assert (await stub.GetProduct(inventory_pb2.GetProductRequest(id="prod-warm"))).id == "prod-warm"
            in_flight = asyncio.ensure_future(stub.GetProduct(inventory_pb2.GetProductRequest(id="prod-slow")))

            async def slow_call_arrived() -> int:
                return old_servicer.attempts["prod-slow"]

            await eventually(slow_call_arrived, bool, timeout=10)
            # Built (bound: its socket takes connections from then on) just before it starts, as a process does.
            new = build(new_config, new_servicer)
            await new.start()
            draining = asyncio.create_task(old.drain())
            while not draining.done() or new_servicer.attempts.total() < 5:
                calls += 1
                try:
                    await stub.GetProduct(inventory_pb2.GetProductRequest(id=f"prod-{calls}"))
                except aio.AioRpcError as error:
                    failures.append(f"call {calls}: {error.code()} {error.details()}")
            await draining
            assert (await in_flight).id == "prod-slow"
    finally:
        await old.drain()
        if new is not None:
            await new.drain()
    assert not failures, failures
    assert old_servicer.attempts["prod-slow"] == 1 and new_servicer.attempts["prod-slow"] == 0
    assert new_servicer.attempts.total() >= 5
