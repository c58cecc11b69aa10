"""The platform's interceptors run fused: one grpc interceptor per run of AroundInterceptors,
each method's plan built on its first call, the chain's order and behaviour unchanged."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from grpc import aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from shopmesh_platform.interceptors.base import AroundInterceptor, CallInfo, NextCall
from shopmesh_platform.interceptors.fused import FusedInterceptor, fuse
from shopmesh_platform.interceptors.request_id import new_request_id

CHECK = "/grpc.health.v1.Health/Check"


class Recording(AroundInterceptor):
    """Notes when it runs (in `events`) and how often it was asked whether it applies."""

    def __init__(self, name: str, events: list[str], *, only: str | None = None) -> None:
        self.name = name
        self.events = events
        self.only = only
        self.asked = 0

    def applies_to(self, method: str) -> bool:
        self.asked += 1
        return self.only is None or method == self.only

    async def around(self, call: CallInfo, proceed: NextCall) -> Any:
        self.events.append(f"{self.name} in {call.method}")
        try:
            return await proceed()
        finally:
            self.events.append(f"{self.name} out")


class Passthrough(aio.ServerInterceptor):  # type: ignore[misc]
    """Not an AroundInterceptor (like OpenTelemetry's): makes a new handler on every call."""

    def __init__(self, events: list[str]) -> None:
        self.events = events

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None or handler.response_streaming:
            return handler
        inner = handler.unary_unary

        async def noted(request: Any, context: Any) -> Any:
            self.events.append("passthrough")
            return await inner(request, context)

        return grpc.unary_unary_rpc_method_handler(
            noted,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


async def serve(chain: list[aio.ServerInterceptor]) -> tuple[aio.Server, aio.Channel]:
    server = aio.server(interceptors=chain)
    servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    await servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    return server, aio.insecure_channel(f"127.0.0.1:{port}")


async def check(channel: aio.Channel) -> int:
    reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
    return int(reply.status)


def test_runs_of_around_interceptors_become_one_and_others_stay_in_place() -> None:
    events: list[str] = []
    a, b, c = Recording("a", events), Recording("b", events), Recording("c", events)
    other = Passthrough(events)
    chain = fuse([a, b, other, c])
    assert [type(i) for i in chain] == [FusedInterceptor, Passthrough, FusedInterceptor]
    first, _, last = chain
    assert isinstance(first, FusedInterceptor) and isinstance(last, FusedInterceptor)
    assert (first.interceptors, last.interceptors) == ((a, b), (c,))


async def test_the_chain_runs_in_order_and_each_method_is_planned_once() -> None:
    events: list[str] = []
    outer, inner = Recording("outer", events), Recording("inner", events)
    server, channel = await serve(fuse([outer, inner]))
    try:
        for _ in range(3):
            assert await check(channel) == health_pb2.HealthCheckResponse.SERVING
    finally:
        await channel.close()
        await server.stop(None)
    assert events == [f"outer in {CHECK}", f"inner in {CHECK}", "inner out", "outer out"] * 3
    assert (outer.asked, inner.asked) == (1, 1)


async def test_an_interceptor_that_does_not_apply_is_left_out_of_the_plan() -> None:
    events: list[str] = []
    always, elsewhere = Recording("always", events), Recording("elsewhere", events, only="/other.Service/Call")
    server, channel = await serve(fuse([always, elsewhere]))
    try:
        await check(channel)
        await check(channel)
    finally:
        await channel.close()
        await server.stop(None)
    assert events == [f"always in {CHECK}", "always out"] * 2


async def test_a_foreign_interceptor_between_fused_runs_keeps_its_place() -> None:
    events: list[str] = []
    first, last = Recording("first", events), Recording("last", events)
    server, channel = await serve(fuse([first, Passthrough(events), last]))
    try:
        await check(channel)
        await check(channel)
    finally:
        await channel.close()
        await server.stop(None)
    once = [f"first in {CHECK}", "passthrough", f"last in {CHECK}", "last out", "first out"]
    assert events == once * 2


async def test_a_changed_call_is_what_the_rest_of_the_chain_and_the_handler_see() -> None:
    events: list[str] = []

    class Replacing(AroundInterceptor):
        async def around(self, call: CallInfo, proceed: NextCall) -> Any:
            changed = CallInfo(call.method, health_pb2.HealthCheckRequest(service="nope"), call.context, call.kind)
            return await proceed(changed)

    server, channel = await serve(fuse([Replacing(), Recording("seen", events)]))
    try:
        try:
            await check(channel)
            raise AssertionError("the handler should have been asked for service `nope`")
        except grpc.aio.AioRpcError as error:
            assert error.code() is grpc.StatusCode.NOT_FOUND
    finally:
        await channel.close()
        await server.stop(None)
    assert events == [f"seen in {CHECK}", "seen out"]


async def test_unknown_methods_are_left_to_grpc() -> None:
    server, channel = await serve(fuse([Recording("x", [])]))
    try:
        call = channel.unary_unary("/no.Such/Method", request_serializer=bytes, response_deserializer=bytes)
        try:
            await call(b"", timeout=10)
            raise AssertionError("an unknown method must fail")
        except grpc.aio.AioRpcError as error:
            assert error.code() is grpc.StatusCode.UNIMPLEMENTED
    finally:
        await channel.close()
        await server.stop(None)


def test_made_request_ids_are_random_version_4_uuids() -> None:
    made = {new_request_id() for _ in range(2000)}
    assert len(made) == 2000
    for request_id in made:
        parsed = uuid.UUID(request_id)
        assert (parsed.version, parsed.variant, str(parsed)) == (4, uuid.RFC_4122, request_id)
