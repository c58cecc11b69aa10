"""A call that outlives its budget (a share of mesh.yaml's timeout) answers DEADLINE_EXCEEDED
from the service, with its request id, instead of being reset by the caller's timer."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc import aio
from grpc_status import rpc_status

from shopmesh.inventory.v1 import inventory_service_pb2 as inventory_pb2
from shopmesh.inventory.v1 import inventory_service_pb2_grpc as inventory_grpc
from shopmesh_platform.interceptors.deadline import BUDGET_SHARE, DeadlineInterceptor
from shopmesh_platform.mesh import load_mesh
from shopmesh_platform.server import ShopmeshServer
from tests.conftest import ConfigFactory
from tests.platform.sample_service import SLOW_SECONDS, SampleInventory, build
from tests.platform.test_server import _capture_access_log
from tests.polling import eventually

GET_PRODUCT = "/shopmesh.inventory.v1.InventoryService/GetProduct"
# GetProduct's declared timeout here: the sample's slow call (1.5 s) outlives its budget.
DECLARED_SECONDS = 1.2


@pytest.fixture
def servicer() -> SampleInventory:
    return SampleInventory()


@pytest.fixture
async def stub(
    make_config: ConfigFactory, servicer: SampleInventory, mesh_document: dict[str, Any]
) -> AsyncIterator[Any]:
    mesh = mesh_document
    methods = mesh["services"]["inventory"]["methods"]
    methods["GetProduct"] = {**methods["GetProduct"], "timeout": DECLARED_SECONDS}
    server: ShopmeshServer = build(make_config(mesh=mesh, SHOPMESH_DRAIN_GRACE_SECONDS="1"), servicer)
    await server.start()
    try:
        async with aio.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
            yield inventory_grpc.InventoryServiceStub(channel)
    finally:
        await server.drain()


def error_info(error: aio.AioRpcError) -> error_details_pb2.ErrorInfo:
    status = rpc_status.from_call(error)
    assert status is not None, "the service sent no status details: the call was not answered by it"
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    return info


async def test_a_call_past_its_budget_is_answered_deadline_exceeded_by_the_service(
    stub: Any, servicer: SampleInventory
) -> None:
    assert SLOW_SECONDS > DECLARED_SECONDS
    stream, handler = _capture_access_log(logging.INFO)
    try:
        with pytest.raises(aio.AioRpcError) as caught:
            await stub.GetProduct(
                inventory_pb2.GetProductRequest(id="prod-slow"), metadata=(("x-request-id", "req-late-1"),)
            )
    finally:
        logging.getLogger("shopmesh.access").removeHandler(handler)
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    info = error_info(caught.value)
    budget = f"{DECLARED_SECONDS * BUDGET_SHARE:g}"
    assert (info.reason, info.domain, info.metadata["budget_seconds"]) == (
        "DEADLINE_EXCEEDED",
        "platform.shopmesh.dev",
        budget,
    )
    assert f"within its {budget} s budget" in caught.value.details()
    assert ("x-request-id", "req-late-1") in list(caught.value.trailing_metadata())
    # The handler was cancelled, not left running to answer nobody.
    assert servicer.attempts["prod-slow"] == 1
    assert servicer.answered["prod-slow"] == 0
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(line["grpc_code"], line["level"]) for line in lines] == [("DEADLINE_EXCEEDED", "info")]


async def test_a_call_within_its_budget_is_untouched(stub: Any, servicer: SampleInventory) -> None:
    reply = await stub.GetProduct(inventory_pb2.GetProductRequest(id="prod-fast"))
    assert reply.id == "prod-fast"
    assert servicer.answered["prod-fast"] == 1


async def test_a_timeout_the_handler_raises_itself_is_not_mistaken_for_the_budget(stub: Any) -> None:
    with pytest.raises(aio.AioRpcError) as caught:
        await stub.GetProduct(inventory_pb2.GetProductRequest(id="prod-own-timeout"))
    assert caught.value.code() == grpc.StatusCode.INTERNAL
    assert error_info(caught.value).reason == "INTERNAL"


def test_every_declared_method_gets_its_share_and_undeclared_ones_none() -> None:
    mesh = load_mesh()
    deadlines = DeadlineInterceptor(mesh)
    create_order = mesh.method("/shopmesh.order.v1.OrderService/CreateOrder")
    assert create_order is not None
    assert deadlines.budget_seconds(create_order.path) == pytest.approx(create_order.timeout_seconds * BUDGET_SHARE)
    assert all(deadlines.applies_to(method.path) for method in mesh.all_methods())
    assert not deadlines.applies_to("/grpc.health.v1.Health/Check")
    assert deadlines.budget_seconds("/grpc.health.v1.Health/Check") is None


@pytest.mark.parametrize("share", [0, 1, 1.5, -0.1])
def test_a_budget_share_outside_zero_to_one_is_refused(share: float) -> None:
    with pytest.raises(ValueError, match="between 0 and 1"):
        DeadlineInterceptor(load_mesh(), share=share)


@pytest.mark.parametrize(
    "product_id",
    [
        pytest.param("prod-slow", id="handler-cancelled"),
        # The handler turns its cancellation into an error after the caller left: nothing can be sent.
        pytest.param("prod-slow-then-unavailable", id="status-undeliverable"),
    ],
)
async def test_a_call_its_caller_abandons_is_logged_cancelled_not_as_a_server_fault(stub: Any, product_id: str) -> None:
    stream, handler = _capture_access_log(logging.INFO)
    try:
        with pytest.raises(aio.AioRpcError) as caught:
            await stub.GetProduct(inventory_pb2.GetProductRequest(id=product_id), timeout=0.3)
        assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED

        async def logged() -> list[dict[str, Any]]:
            return [json.loads(line) for line in stream.getvalue().splitlines()]

        lines = await eventually(logged, bool, timeout=5)
    finally:
        logging.getLogger("shopmesh.access").removeHandler(handler)
    assert [(line["grpc_code"], line["level"]) for line in lines] == [("CANCELLED", "info")]
