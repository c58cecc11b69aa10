"""The shape shared by the platform's server interceptors.

grpc.aio interceptors get a handler, not the call; `AroundInterceptor` wraps the
handler's behaviour so a subclass writes one `around(call, next)` coroutine that
runs around every unary-response call. Streaming-response methods (health Watch,
reflection) pass through untouched: the mesh's own APIs are all unary.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from grpc import aio

NextCall = Callable[[], Awaitable[Any]]


@dataclass(frozen=True)
class CallInfo:
    """What an interceptor knows about the call it wraps."""

    method: str
    request: Any
    context: aio.ServicerContext[Any, Any]

    def metadata(self, key: str) -> str | None:
        for item in self.context.invocation_metadata() or ():
            if item.key == key:
                value = item.value
                return value.decode() if isinstance(value, bytes) else value
        return None


class AroundInterceptor(aio.ServerInterceptor):  # type: ignore[misc]
    """Base class: override `around` (and optionally `applies_to`)."""

    def applies_to(self, method: str) -> bool:
        return True

    async def around(self, call: CallInfo, proceed: NextCall) -> Any:
        raise NotImplementedError

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or not self.applies_to(method):
            return handler
        if handler.unary_unary is not None:
            behaviour = handler.unary_unary
            factory = grpc.unary_unary_rpc_method_handler
        elif handler.stream_unary is not None:
            behaviour = handler.stream_unary
            factory = grpc.stream_unary_rpc_method_handler
        else:
            return handler

        async def proceed(request: Any, context: aio.ServicerContext[Any, Any]) -> Any:
            # Handlers may be plain functions (the generated base classes are).
            result = behaviour(request, context)
            return await result if inspect.isawaitable(result) else result

        async def wrapped(request: Any, context: aio.ServicerContext[Any, Any]) -> Any:
            return await self.around(CallInfo(method, request, context), lambda: proceed(request, context))

        return factory(
            wrapped,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


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
