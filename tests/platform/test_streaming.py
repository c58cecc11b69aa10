"""Streaming calls run the whole interceptor chain, like unary ones.

Server-, client- and bidirectional streaming methods (the test-only sample
service, health Watch, reflection) are authorized, validated per request
message, status-mapped (also mid-stream), counted, logged and traced.
"""

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

from shopmesh.inventory.v1 import inventory_service_pb2 as inventory_pb2
from shopmesh.inventory.v1 import inventory_service_pb2_grpc as inventory_grpc
from shopmesh_platform.context import Caller
from shopmesh_platform.errors import Unauthenticated
from shopmesh_platform.logs import JsonFormatter
from shopmesh_platform.server import ServiceBinding, ShopmeshServer, create_server
from shopmesh_platform.transport import CLIENT_CERT_HEADER
from tests.conftest import ConfigFactory
from tests.platform import streaming_sample
from tests.platform.sample_service import SampleInventory
from tests.platform.streaming_sample import SERVICE, StreamingSample, Stub
from tests.platform.test_server import details_of

SPIFFE = "spiffe://cluster.local/ns/shopmesh/sa/"
GOOD_TOKEN = (("authorization", "Bearer good-token"),)


class StaticTokens:
    """Accepts one token, for user `ada`; what users' real verifier does is tested elsewhere."""

    async def verify(self, token: str) -> Caller:
        if token != "good-token":
            raise Unauthenticated("the token is not valid", reason="TOKEN_INVALID")
        return Caller(user_id="ada", role="customer")


def requests(*ids: str) -> list[inventory_pb2.GetProductRequest]:
    return [inventory_pb2.GetProductRequest(id=product_id) for product_id in ids]


async def start(make_config: ConfigFactory, mesh_document: dict[str, Any], **env: str) -> ShopmeshServer:
    server = create_server(
        make_config(mesh=streaming_sample.sample_mesh(mesh_document), SHOPMESH_DRAIN_GRACE_SECONDS="1", **env),
        [
            ServiceBinding.of(SampleInventory(), inventory_pb2, inventory_grpc, "InventoryService"),
            streaming_sample.binding(StreamingSample()),
        ],
        user_tokens=StaticTokens(),
    )
    await server.start()
    return server


@pytest.fixture
async def server(make_config: ConfigFactory, mesh_document: dict[str, Any]) -> AsyncIterator[ShopmeshServer]:
    running = await start(make_config, mesh_document)
    yield running
    await running.drain()


@pytest.fixture
async def channel(server: ShopmeshServer) -> AsyncIterator[aio.Channel]:
    async with aio.insecure_channel(f"127.0.0.1:{server.grpc_port}") as chan:
        yield chan


async def test_user_streaming_method_without_a_valid_token_is_refused(channel: aio.Channel) -> None:
    for metadata, reason in (((), "TOKEN_MISSING"), ((("authorization", "Bearer forged"),), "TOKEN_INVALID")):
        call = Stub(channel).WatchProduct(requests("prod-1")[0], metadata=metadata)
        with pytest.raises(aio.AioRpcError) as caught:
            _ = [product async for product in call]
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        infos = [d for d in details_of(caught.value) if isinstance(d, error_details_pb2.ErrorInfo)]
        assert infos[0].reason == reason


async def test_user_streaming_method_streams_as_the_verified_user(channel: aio.Channel) -> None:
    call = Stub(channel).WatchProduct(requests("prod-1")[0], metadata=GOOD_TOKEN)
    names = [product.name async for product in call]
    assert names == [f"ada v{version}" for version in range(streaming_sample.WATCHED_PRODUCTS)]
    assert await call.code() == grpc.StatusCode.OK
    assert len(dict(await call.initial_metadata())["x-request-id"]) == 36


async def test_client_and_bidirectional_streams_reach_their_handlers(channel: aio.Channel) -> None:
    imported = await Stub(channel).ImportProducts(iter(requests("prod-1", "prod-2")))
    assert [p.id for p in imported.products] == ["prod-1", "prod-2"]
    synced = Stub(channel).SyncProducts(iter(requests("prod-a", "prod-b", "prod-c")))
    assert [p.id async for p in synced] == ["prod-a", "prod-b", "prod-c"]


async def test_every_streamed_request_is_validated(channel: aio.Channel) -> None:
    stub = Stub(channel)
    with pytest.raises(aio.AioRpcError) as caught:
        await stub.ImportProducts(iter(requests("prod-1", "not-a-product")))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    bad_requests = [d for d in details_of(caught.value) if isinstance(d, error_details_pb2.BadRequest)]
    assert [(v.field, v.reason) for v in bad_requests[0].field_violations] == [("id", "string.pattern")]

    synced = stub.SyncProducts(iter(requests("prod-a", "nope")))
    received = []
    with pytest.raises(aio.AioRpcError) as caught:
        async for product in synced:
            received.append(product.id)
    assert received == ["prod-a"]
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    with pytest.raises(aio.AioRpcError) as caught:
        _ = [p async for p in stub.WatchProduct(requests("nope")[0], metadata=GOOD_TOKEN)]
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_errors_raised_mid_stream_are_mapped_to_statuses(channel: aio.Channel) -> None:
    stub = Stub(channel)
    received = []
    with pytest.raises(aio.AioRpcError) as caught:
        async for product in stub.WatchProduct(requests("prod-missing")[0], metadata=GOOD_TOKEN):
            received.append(product.id)
    assert received == ["prod-missing"]
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    infos = [d for d in details_of(caught.value) if isinstance(d, error_details_pb2.ErrorInfo)]
    assert (infos[0].reason, infos[0].domain) == ("PRODUCT_NOT_FOUND", "inventory.shopmesh.dev")

    metadata = (*GOOD_TOKEN, ("x-request-id", "req-stream-crash"))
    with pytest.raises(aio.AioRpcError) as caught:
        _ = [p async for p in stub.WatchProduct(requests("prod-crash")[0], metadata=metadata)]
    assert caught.value.code() == grpc.StatusCode.INTERNAL
    assert "hunter2" not in caught.value.details()
    assert "req-stream-crash" in caught.value.details()


async def test_streams_are_counted_logged_and_traced_when_they_end(
    server: ShopmeshServer, channel: aio.Channel
) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("inventory"))
    access_logger = logging.getLogger("shopmesh.access")
    access_logger.addHandler(handler)
    access_logger.setLevel(logging.DEBUG)  # successful fast calls are logged at DEBUG
    stub = Stub(channel)
    try:
        ok = stub.WatchProduct(requests("prod-1")[0], metadata=(*GOOD_TOKEN, ("x-request-id", "req-stream-7")))
        assert len([p async for p in ok]) == streaming_sample.WATCHED_PRODUCTS
        with pytest.raises(aio.AioRpcError):
            _ = [p async for p in stub.WatchProduct(requests("prod-missing")[0], metadata=GOOD_TOKEN)]
        assert len([p async for p in stub.SyncProducts(iter(requests("prod-a", "prod-b")))]) == 2
    finally:
        access_logger.removeHandler(handler)

    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    finished = [line for line in lines if line["message"] == "rpc finished"]
    assert [(line["method"], line["grpc_code"]) for line in finished] == [
        (f"/{SERVICE}/WatchProduct", "OK"),
        (f"/{SERVICE}/WatchProduct", "NOT_FOUND"),
        (f"/{SERVICE}/SyncProducts", "OK"),
    ]
    assert finished[0]["request_id"] == "req-stream-7"
    assert len(finished[0]["trace_id"]) == 32

    def scrape() -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=5) as response:
            return response.read().decode()

    text = await asyncio.to_thread(scrape)
    for method, code in (("WatchProduct", "OK"), ("WatchProduct", "NOT_FOUND"), ("SyncProducts", "OK")):
        labels = f'grpc_code="{code}",grpc_method="{method}",grpc_service="{SERVICE}"'
        assert f"grpc_server_handled_total{{{labels}}} 1.0" in text


async def test_health_watch_and_reflection_are_for_the_front_door_only(
    make_config: ConfigFactory, mesh_document: dict[str, Any]
) -> None:
    server = await start(make_config, mesh_document, MESH_TLS="sidecar")

    def as_caller(identity: str) -> tuple[tuple[str, str], ...]:
        return ((CLIENT_CERT_HEADER, f"By={SPIFFE}inventory;URI={SPIFFE}{identity}"),)

    async def watch(chan: aio.Channel, identity: str) -> int:
        call = health_pb2_grpc.HealthStub(chan).Watch(health_pb2.HealthCheckRequest(), metadata=as_caller(identity))
        async for reply in call:
            call.cancel()
            return int(reply.status)
        raise AssertionError("Watch ended without a reply")

    async def reflect(chan: aio.Channel, identity: str) -> list[str]:
        stub = reflection_pb2_grpc.ServerReflectionStub(chan)
        call = stub.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), metadata=as_caller(identity)
        )
        return [s.name async for reply in call for s in reply.list_services_response.service]

    try:
        async with aio.insecure_channel(f"127.0.0.1:{server.grpc_port}") as chan:
            assert await watch(chan, "developer") == health_pb2.HealthCheckResponse.SERVING
            assert SERVICE in await reflect(chan, "developer")
            for call in (watch, reflect):
                with pytest.raises(aio.AioRpcError) as caught:
                    await call(chan, "orders")
                assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    finally:
        await server.drain()
