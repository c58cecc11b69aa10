"""The platform's interceptors run as one grpc interceptor, planned once per method.

grpc.aio calls every server interceptor on every call, and an `AroundInterceptor`
rebuilds the method's handler each time: seven interceptors meant seven handler
rebuilds, seven wrapper coroutines and seven `applies_to` decisions per call
(`make bench-platform` measured this fixed cost as most of what Health/Check
pays over a bare server). `fuse` replaces each run of consecutive
AroundInterceptors with one `FusedInterceptor` that, the first time a method is
called, decides which of them apply, composes their `around`s around the
handler and builds the rebuilt handler; later calls of the method reuse it. The
order and behaviour of the chain are unchanged: each interceptor's `around`
still sees the same CallInfo and `proceed` as when it ran alone. Other
interceptors (OpenTelemetry's, when spans are exported) stay where they are in
the chain, between the fused runs.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import grpc
from grpc import aio

from shopmesh_platform.interceptors.base import _BEHAVIOUR, AroundInterceptor, CallInfo, CallKind, write_responses

# Runs the rest of the chain, handler included, for one call.
Step = Callable[[CallInfo], Awaitable[Any]]


def fuse(chain: Sequence[aio.ServerInterceptor]) -> list[aio.ServerInterceptor]:
    """`chain`, in the same order, with each run of AroundInterceptors made one interceptor."""
    fused: list[aio.ServerInterceptor] = []
    run: list[AroundInterceptor] = []
    for interceptor in chain:
        if isinstance(interceptor, AroundInterceptor):
            run.append(interceptor)
            continue
        if run:
            fused.append(FusedInterceptor(run))
            run = []
        fused.append(interceptor)
    if run:
        fused.append(FusedInterceptor(run))
    return fused


def fused(factory: Callable[..., list[aio.ServerInterceptor]]) -> Callable[..., list[aio.ServerInterceptor]]:
    """A chain factory (like interceptors.default_chain) whose chains come out fused."""

    def build(**kwargs: Any) -> list[aio.ServerInterceptor]:
        return fuse(factory(**kwargs))

    return build


def _link(interceptor: AroundInterceptor, inner: Step) -> Step:
    """One interceptor's `around` in front of `inner`."""
    around = interceptor.around

    def step(call: CallInfo) -> Awaitable[Any]:
        def proceed(changed: CallInfo | None = None, /) -> Awaitable[Any]:
            return inner(changed or call)

        return around(call, proceed)

    return step


class FusedInterceptor(aio.ServerInterceptor):  # type: ignore[misc]
    """AroundInterceptors (outermost first) as one, with a handler built once per method."""

    def __init__(self, interceptors: Sequence[AroundInterceptor]) -> None:
        self.interceptors = tuple(interceptors)
        # method -> (the handler it was built from, the handler built). Bounded by the
        # methods the server serves: a call of an unknown method has no handler.
        self._built: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method = handler_call_details.method
        built = self._built.get(method)
        if built is not None and built[0] is handler:
            return built[1]
        # First call, or an interceptor further in made a new handler (then this is per call).
        wrapped = self._build(method, handler)
        self._built[method] = (handler, wrapped)
        return wrapped

    def _build(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        applicable = [i for i in self.interceptors if i.applies_to(method)]
        if not applicable:
            return handler
        kind = CallKind((bool(handler.request_streaming), bool(handler.response_streaming)))
        attribute, factory = _BEHAVIOUR[kind]
        behaviour = getattr(handler, attribute)
        deserializer = handler.request_deserializer
        step: Step = _innermost(behaviour, kind)
        for interceptor in reversed(applicable):
            deserializer = interceptor.request_deserializer(deserializer)
            step = _link(interceptor, step)
        entry = _entry(method, kind, step)
        return factory(entry, request_deserializer=deserializer, response_serializer=handler.response_serializer)


def _innermost(behaviour: Any, kind: CallKind) -> Step:
    """The handler itself, as the last step of the chain."""
    if kind.response_streaming:

        async def stream(call: CallInfo) -> None:
            await write_responses(behaviour(call.request, call.context), call.context)

        return stream

    async def unary(call: CallInfo) -> Any:
        # Handlers may be plain functions (the generated base classes are).
        result = behaviour(call.request, call.context)
        return await result if inspect.isawaitable(result) else result

    return unary


def _entry(method: str, kind: CallKind, step: Step) -> Any:
    """What grpc calls: the composed chain for one call of `method`."""
    if kind.response_streaming:

        async def streaming(request: Any, context: aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
            await step(CallInfo(method, request, context, kind))
            # An async generator function, as grpc and the tracing interceptor expect of
            # response-streaming handlers; the responses were written by the innermost step.
            return
            yield

        return streaming

    async def unary(request: Any, context: aio.ServicerContext[Any, Any]) -> Any:
        return await step(CallInfo(method, request, context, kind))

    return unary
