"""The shape shared by the platform's server interceptors.

grpc.aio interceptors get a handler, not the call; `AroundInterceptor` wraps the
handler's behaviour so a subclass writes one `around(call, proceed)` coroutine
that runs around every call, of all four kinds: `proceed()` runs the rest of the
chain and the handler to the end of the call. For a response stream that means
the whole stream: the innermost wrapper writes each response with
`context.write`, so an interceptor sees the stream's final outcome (an error
raised mid-stream included) when `proceed()` returns or raises. For a request
stream `call.request` is the async iterator of request messages; an interceptor
may pass a changed `CallInfo` to `proceed` (e.g. wrapping that iterator).
"""

from __future__ import annotations

import asyncio
import enum
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import grpc
from grpc import aio


class CallKind(enum.Enum):
    """The four gRPC call kinds, by whether requests / responses are streamed."""

    UNARY_UNARY = (False, False)
    UNARY_STREAM = (False, True)
    STREAM_UNARY = (True, False)
    STREAM_STREAM = (True, True)

    @property
    def request_streaming(self) -> bool:
        return self.value[0]

    @property
    def response_streaming(self) -> bool:
        return self.value[1]


# The handler's behaviour and the factory that rebuilds a handler of the same kind.
_BEHAVIOUR = {
    CallKind.UNARY_UNARY: ("unary_unary", grpc.unary_unary_rpc_method_handler),
    CallKind.UNARY_STREAM: ("unary_stream", grpc.unary_stream_rpc_method_handler),
    CallKind.STREAM_UNARY: ("stream_unary", grpc.stream_unary_rpc_method_handler),
    CallKind.STREAM_STREAM: ("stream_stream", grpc.stream_stream_rpc_method_handler),
}


@dataclass(frozen=True)
class CallInfo:
    """What an interceptor knows about the call it wraps."""

    method: str
    # The request message, or for request streams an async iterator of them.
    request: Any
    context: aio.ServicerContext[Any, Any]
    kind: CallKind = CallKind.UNARY_UNARY

    def metadata(self, key: str) -> str | None:
        for item in self.context.invocation_metadata() or ():
            if item.key == key:
                value = item.value
                return value.decode() if isinstance(value, bytes) else value
        return None


class NextCall(Protocol):
    """Runs the rest of the chain (with `call`, if given, instead of the current one)."""

    def __call__(self, call: CallInfo | None = None, /) -> Awaitable[Any]: ...


class AroundInterceptor(aio.ServerInterceptor):  # type: ignore[misc]
    """Base class: override `around` (and optionally `applies_to`)."""

    def applies_to(self, method: str) -> bool:
        return True

    async def around(self, call: CallInfo, proceed: NextCall) -> Any:
        raise NotImplementedError

    def request_deserializer(self, original: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
        """The deserializer the rebuilt handler decodes requests with; the original by default."""
        return original

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or not self.applies_to(method):
            return handler
        kind = CallKind((bool(handler.request_streaming), bool(handler.response_streaming)))
        attribute, factory = _BEHAVIOUR[kind]
        behaviour = getattr(handler, attribute)
        wrap = self._wrap_streaming if kind.response_streaming else self._wrap_unary_response
        return factory(
            wrap(method, kind, behaviour),
            request_deserializer=self.request_deserializer(handler.request_deserializer),
            response_serializer=handler.response_serializer,
        )

    def _wrap_unary_response(self, method: str, kind: CallKind, behaviour: Any) -> Any:
        async def wrapped(request: Any, context: aio.ServicerContext[Any, Any]) -> Any:
            current = CallInfo(method, request, context, kind)

            async def proceed(call: CallInfo | None = None) -> Any:
                call = call or current
                # Handlers may be plain functions (the generated base classes are).
                result = behaviour(call.request, call.context)
                return await result if inspect.isawaitable(result) else result

            return await self.around(current, proceed)

        return wrapped

    def _wrap_streaming(self, method: str, kind: CallKind, behaviour: Any) -> Any:
        async def wrapped(request: Any, context: aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
            current = CallInfo(method, request, context, kind)

            async def proceed(call: CallInfo | None = None) -> None:
                call = call or current
                await write_responses(behaviour(call.request, call.context), call.context)

            await self.around(current, proceed)
            # An async generator function, as grpc and the tracing interceptor expect of
            # response-streaming handlers; the responses were written by `proceed`.
            return
            yield

        return wrapped


async def write_responses(result: Any, context: aio.ServicerContext[Any, Any]) -> None:
    """Send what a response-streaming handler produces, whichever style it is written in.

    An async generator (or a sync one) yields the responses; a coroutine handler
    (the reader/writer style of grpc.aio, e.g. health Watch) writes them itself.
    """
    if inspect.isawaitable(result):
        result = await result
    if result is None:
        return
    if hasattr(result, "__aiter__"):
        async for response in result:
            await context.write(response)
    else:
        for response in result:
            await context.write(response)


def outcome_code(context: aio.ServicerContext[Any, Any], error: BaseException | None) -> grpc.StatusCode:
    """The status a call ended with, given the exception that escaped it (if any)."""
    if error is None or isinstance(error, aio.AbortError):
        code = context.code()
        if code is None:
            return grpc.StatusCode.OK if error is None else grpc.StatusCode.UNKNOWN
        return code if isinstance(code, grpc.StatusCode) else _CODES_BY_VALUE[code]
    if isinstance(error, asyncio.CancelledError):
        return grpc.StatusCode.CANCELLED
    return grpc.StatusCode.UNKNOWN


_CODES_BY_VALUE = {code.value[0]: code for code in grpc.StatusCode}


def split_method(method: str) -> tuple[str, str]:
    """`/pkg.Service/Method` -> ("pkg.Service", "Method")."""
    _, service, name = method.split("/", 2)
    return service, name
