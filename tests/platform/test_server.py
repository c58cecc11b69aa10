"""create_server around a sample service on port 0: health, reflection, validation,
error details, metrics, logs and access control, all through a real gRPC client."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import urllib.request
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status

from shopmesh.inventory.v1 import inventory_service_pb2 as inventory_pb2
from shopmesh.inventory.v1 import inventory_service_pb2_grpc as inventory_grpc
from shopmesh_platform.logs import JsonFormatter
from shopmesh_platform.server import LIVENESS_SERVICE, ShopmeshServer
from tests.conftest import ConfigFactory
from tests.platform.sample_service import SampleInventory, build
from tests.polling import eventually

SERVICE = "shopmesh.inventory.v1.InventoryService"


@pytest.fixture
async def server(make_config: ConfigFactory) -> AsyncIterator[ShopmeshServer]:
    running = build(make_config(SHOPMESH_DRAIN_GRACE_SECONDS="1"), SampleInventory())
    await running.start()
    yield running
    await running.drain()


@pytest.fixture
async def channel(server: ShopmeshServer) -> AsyncIterator[aio.Channel]:
    async with aio.insecure_channel(f"127.0.0.1:{server.grpc_port}") as chan:
        yield chan


def details_of(error: aio.AioRpcError) -> list[Any]:
    """Unpack the google.rpc.Status details of a failed call."""
    status = rpc_status.from_call(error)
    assert status is not None, "no grpc-status-details-bin trailer"
    unpacked = []
    for detail in status.details:
        for kind in (error_details_pb2.ErrorInfo, error_details_pb2.BadRequest):
            if detail.Is(kind.DESCRIPTOR):
                message = kind()
                detail.Unpack(message)
                unpacked.append(message)
    return unpacked


async def test_health_reports_serving_for_server_and_service(channel: aio.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    for name in ("", SERVICE):
        reply = await health.Check(health_pb2.HealthCheckRequest(service=name))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_reflection_lists_the_service(channel: aio.Channel) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    responses = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    names = [s.name async for r in responses for s in r.list_services_response.service]
    assert SERVICE in names
    assert "grpc.health.v1.Health" in names


async def test_valid_request_reaches_the_handler(channel: aio.Channel) -> None:
    reply = await inventory_grpc.InventoryServiceStub(channel).GetProduct(
        inventory_pb2.GetProductRequest(id="prod-123")
    )
    assert reply.id == "prod-123"


async def test_invalid_request_is_invalid_argument_naming_the_field(channel: aio.Channel) -> None:
    with pytest.raises(aio.AioRpcError) as caught:
        await inventory_grpc.InventoryServiceStub(channel).GetProduct(inventory_pb2.GetProductRequest(id="nope"))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "id" in caught.value.details()
    bad_requests = [d for d in details_of(caught.value) if isinstance(d, error_details_pb2.BadRequest)]
    assert [(v.field, v.reason) for v in bad_requests[0].field_violations] == [("id", "string.pattern")]


# Found by the gRPC fuzzer (tests/integration/test_fuzz_grpc.py): bytes that do not decode
# were UNKNOWN "Unexpected <class 'google.protobuf.message.DecodeError'>: ...".
@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(b"\xff\xff\xff", id="garbage"),
        pytest.param(b"\x0a\x01\xff", id="invalid-utf8-in-string-field"),
        pytest.param(b"\x08", id="truncated-varint"),
        pytest.param(b"\x0a\xe8\x07x", id="length-past-the-end"),
    ],
)
async def test_undecodable_request_is_invalid_argument(channel: aio.Channel, payload: bytes) -> None:
    get_product = channel.unary_unary(f"/{SERVICE}/GetProduct")
    with pytest.raises(aio.AioRpcError) as caught:
        await get_product(payload)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    expected = "invalid request: not a well-formed shopmesh.inventory.v1.GetProductRequest message"
    assert caught.value.details() == expected
    infos = [d for d in details_of(caught.value) if isinstance(d, error_details_pb2.ErrorInfo)]
    assert infos[0].reason == "MALFORMED_REQUEST"


async def test_domain_error_arrives_as_status_with_error_info(channel: aio.Channel) -> None:
    with pytest.raises(aio.AioRpcError) as caught:
        await inventory_grpc.InventoryServiceStub(channel).GetProduct(
            inventory_pb2.GetProductRequest(id="prod-missing")
        )
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    infos = [d for d in details_of(caught.value) if isinstance(d, error_details_pb2.ErrorInfo)]
    assert len(infos) == 1
    assert infos[0].reason == "PRODUCT_NOT_FOUND"
    assert infos[0].domain == "inventory.shopmesh.dev"
    assert infos[0].metadata["product_id"] == "prod-missing"


async def test_unexpected_exception_is_internal_without_leaking(channel: aio.Channel) -> None:
    with pytest.raises(aio.AioRpcError) as caught:
        await inventory_grpc.InventoryServiceStub(channel).GetProduct(
            inventory_pb2.GetProductRequest(id="prod-crash"), metadata=(("x-request-id", "req-crash-1"),)
        )
    assert caught.value.code() == grpc.StatusCode.INTERNAL
    assert "hunter2" not in caught.value.details()
    assert "req-crash-1" in caught.value.details()
    assert ("x-request-id", "req-crash-1") in list(caught.value.trailing_metadata())


async def test_metrics_count_calls_by_method_and_code(server: ShopmeshServer, channel: aio.Channel) -> None:
    stub = inventory_grpc.InventoryServiceStub(channel)
    await stub.GetProduct(inventory_pb2.GetProductRequest(id="prod-1"))
    for _ in range(2):
        with pytest.raises(aio.AioRpcError):
            await stub.GetProduct(inventory_pb2.GetProductRequest(id="prod-missing"))

    def scrape() -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=5) as response:
            return response.read().decode()

    text = await asyncio.to_thread(scrape)
    labels = f'grpc_code="{{}}",grpc_method="GetProduct",grpc_service="{SERVICE}"'
    assert f"grpc_server_handled_total{{{labels.format('OK')}}} 1.0" in text
    assert f"grpc_server_handled_total{{{labels.format('NOT_FOUND')}}} 2.0" in text
    assert f'grpc_server_handling_seconds_count{{grpc_method="GetProduct",grpc_service="{SERVICE}"}} 3.0' in text


async def test_log_line_carries_request_and_trace_ids(channel: aio.Channel) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("inventory"))
    access_logger = logging.getLogger("shopmesh.access")
    access_logger.addHandler(handler)
    access_logger.setLevel(logging.DEBUG)  # successful fast calls are logged at DEBUG
    try:
        call = inventory_grpc.InventoryServiceStub(channel).GetProduct(
            inventory_pb2.GetProductRequest(id="prod-7"), metadata=(("x-request-id", "req-log-42"),)
        )
        await call
        initial = await call.initial_metadata()
    finally:
        access_logger.removeHandler(handler)
    assert ("x-request-id", "req-log-42") in list(initial)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    finished = [line for line in lines if line["message"] == "rpc finished"]
    assert len(finished) == 1
    assert finished[0]["request_id"] == "req-log-42"
    assert finished[0]["method"] == f"/{SERVICE}/GetProduct"
    assert finished[0]["grpc_code"] == "OK"
    assert len(finished[0]["trace_id"]) == 32


def _capture_access_log(level: int) -> tuple[io.StringIO, logging.Handler]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("inventory"))
    access_logger = logging.getLogger("shopmesh.access")
    access_logger.addHandler(handler)
    access_logger.setLevel(level)
    return stream, handler


async def test_at_info_only_failed_and_slow_calls_are_logged(channel: aio.Channel) -> None:
    stream, handler = _capture_access_log(logging.INFO)
    stub = inventory_grpc.InventoryServiceStub(channel)
    try:
        await stub.GetProduct(inventory_pb2.GetProductRequest(id="prod-fast"))
        await stub.GetProduct(inventory_pb2.GetProductRequest(id="prod-slow"))
        with pytest.raises(aio.AioRpcError):
            await stub.GetProduct(inventory_pb2.GetProductRequest(id="prod-missing"))
    finally:
        logging.getLogger("shopmesh.access").removeHandler(handler)
    finished = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(line["grpc_code"], line.get("slow", False), line["level"]) for line in finished] == [
        ("OK", True, "info"),
        ("NOT_FOUND", False, "info"),
    ]


async def test_an_incoming_traceparent_is_continued_in_the_log_line(channel: aio.Channel) -> None:
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    stream, handler = _capture_access_log(logging.DEBUG)
    try:
        await inventory_grpc.InventoryServiceStub(channel).GetProduct(
            inventory_pb2.GetProductRequest(id="prod-7"),
            metadata=(("traceparent", f"00-{trace_id}-00f067aa0ba902b7-01"),),
        )
    finally:
        logging.getLogger("shopmesh.access").removeHandler(handler)
    finished = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["trace_id"] for line in finished] == [trace_id]
    assert finished[0]["span_id"] != "00f067aa0ba902b7"


async def test_forged_request_id_is_replaced(channel: aio.Channel) -> None:
    call = inventory_grpc.InventoryServiceStub(channel).GetProduct(
        inventory_pb2.GetProductRequest(id="prod-7"), metadata=(("x-request-id", 'x" {"level": "error"} ' + "a" * 300),)
    )
    await call
    echoed = dict(await call.initial_metadata())["x-request-id"]
    assert "level" not in echoed and len(echoed) == 36


async def test_user_method_without_token_is_unauthenticated(channel: aio.Channel) -> None:
    with pytest.raises(aio.AioRpcError) as caught:
        await inventory_grpc.InventoryServiceStub(channel).CreateProduct(
            inventory_pb2.CreateProductRequest(id="prod-1", name="x", price=1, currency="USD")
        )
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_internal_method_without_identity_is_permission_denied(channel: aio.Channel) -> None:
    with pytest.raises(aio.AioRpcError) as caught:
        await inventory_grpc.InventoryServiceStub(channel).ReserveStock(inventory_pb2.ReserveStockRequest())
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    infos = [d for d in details_of(caught.value) if isinstance(d, error_details_pb2.ErrorInfo)]
    assert infos[0].reason == "CALLER_NOT_PERMITTED"


async def test_undeclared_method_is_denied(make_config: ConfigFactory, mesh_document: dict[str, Any]) -> None:
    del mesh_document["services"]["inventory"]["methods"]["GetProduct"]
    server = build(make_config(mesh=mesh_document), SampleInventory())
    await server.start()
    try:
        async with aio.insecure_channel(f"127.0.0.1:{server.grpc_port}") as chan:
            with pytest.raises(aio.AioRpcError) as caught:
                await inventory_grpc.InventoryServiceStub(chan).GetProduct(inventory_pb2.GetProductRequest(id="prod-1"))
    finally:
        await server.drain()
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "not declared" in caught.value.details()


async def test_health_follows_the_readiness_probe(make_config: ConfigFactory) -> None:
    database_up = asyncio.Event()

    async def readiness() -> bool:
        return database_up.is_set()

    server = build(make_config(SHOPMESH_HEALTH_PROBE_INTERVAL_SECONDS="0.05"), SampleInventory(), readiness=readiness)
    await server.start()
    try:
        async with aio.insecure_channel(f"127.0.0.1:{server.grpc_port}") as chan:
            health = health_pb2_grpc.HealthStub(chan)

            async def status() -> int:
                return (await health.Check(health_pb2.HealthCheckRequest(service=SERVICE))).status

            assert await status() == health_pb2.HealthCheckResponse.NOT_SERVING
            database_up.set()
            await eventually(status, lambda s: s == health_pb2.HealthCheckResponse.SERVING, timeout=5)
            database_up.clear()
            await eventually(status, lambda s: s == health_pb2.HealthCheckResponse.NOT_SERVING, timeout=5)
            # Liveness ignores the database: an outage makes the pod unready, never restarts it.
            live = await health.Check(health_pb2.HealthCheckRequest(service=LIVENESS_SERVICE))
            assert live.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        await server.drain()


async def test_method_not_built_yet_is_unimplemented(make_config: ConfigFactory, mesh_document: dict[str, Any]) -> None:
    mesh_document["services"]["inventory"]["methods"]["AdjustStock"] = {"access": "public"}
    server = build(make_config(mesh=mesh_document), SampleInventory())
    await server.start()
    try:
        async with aio.insecure_channel(f"127.0.0.1:{server.grpc_port}") as chan:
            with pytest.raises(aio.AioRpcError) as caught:
                await inventory_grpc.InventoryServiceStub(chan).AdjustStock(
                    inventory_pb2.AdjustStockRequest(
                        product_id="prod-1",
                        delta=1,
                        request_id="0b8e8a52-1a5f-4d8e-9a49-5d0c8f3f7e21",
                        reason="restock",
                    )
                )
    finally:
        await server.drain()
    assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED
    infos = [d for d in details_of(caught.value) if isinstance(d, error_details_pb2.ErrorInfo)]
    assert infos[0].reason == "NOT_IMPLEMENTED"
