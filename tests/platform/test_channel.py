"""create_channel: deadlines from the declaration on every call; retries only
for methods declared idempotent."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from grpc import aio

from shopmesh.inventory.v1 import inventory_service_pb2 as inventory_pb2
from shopmesh.inventory.v1 import inventory_service_pb2_grpc as inventory_grpc
from shopmesh_platform.channel import create_channel
from tests.conftest import ConfigFactory
from tests.platform.sample_service import SampleInventory, build


async def test_deadline_applies_without_caller_timeout(
    make_config: ConfigFactory, mesh_document: dict[str, Any]
) -> None:
    mesh_document["services"]["inventory"]["methods"]["GetProduct"]["timeout"] = 0.2
    config = make_config(mesh=mesh_document, SHOPMESH_DRAIN_GRACE_SECONDS="0")
    server = build(config, SampleInventory())
    await server.start()
    try:
        async with create_channel(config, "inventory", address=f"127.0.0.1:{server.grpc_port}") as channel:
            with pytest.raises(aio.AioRpcError) as caught:
                await inventory_grpc.InventoryServiceStub(channel).GetProduct(
                    inventory_pb2.GetProductRequest(id="prod-slow")
                )
    finally:
        await server.drain()
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


async def test_idempotent_method_is_retried_and_others_are_not(
    make_config: ConfigFactory, mesh_document: dict[str, Any]
) -> None:
    mesh_document["services"]["inventory"]["methods"]["ListProducts"]["idempotent"] = False
    config = make_config(mesh=mesh_document)
    servicer = SampleInventory()
    server = build(config, servicer)
    await server.start()
    try:
        async with create_channel(config, "inventory", address=f"127.0.0.1:{server.grpc_port}") as channel:
            stub = inventory_grpc.InventoryServiceStub(channel)
            reply = await stub.GetProduct(inventory_pb2.GetProductRequest(id="prod-flaky-1"))
            with pytest.raises(aio.AioRpcError) as caught:
                await stub.ListProducts(inventory_pb2.ListProductsRequest())
    finally:
        await server.drain()
    assert reply.id == "prod-flaky-1"
    assert servicer.attempts["prod-flaky-1"] == 3  # two UNAVAILABLE, then success
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert servicer.attempts["ListProducts"] == 1
