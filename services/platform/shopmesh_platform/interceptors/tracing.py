"""OpenTelemetry tracing of every call.

With OTEL_EXPORTER_OTLP_ENDPOINT configured, the opentelemetry-instrumentation-grpc
server interceptor records a span per call, exported over OTLP by the service's
provider (shopmesh_platform.traces). Without
one, nothing would ever see those spans, so the platform does not record them:
`TraceContextInterceptor` only continues an incoming `traceparent` (or starts a
new trace id) as the current, non-recording span, so log lines still carry
trace and span ids that match the caller's, at the cost of two random numbers
and a context switch per call.
"""

from __future__ import annotations

from typing import Any

from grpc import aio
from opentelemetry import context, trace
from opentelemetry.instrumentation.grpc import aio_server_interceptor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from shopmesh_platform.interceptors.base import AroundInterceptor, CallInfo, NextCall
from shopmesh_platform.traces import UNTRACED_SERVICES

TRACEPARENT_HEADER = "traceparent"
# Platform services (grpc.health, grpc.reflection) are not traced: they are noise in traces.
_UNTRACED_PREFIX = "/grpc."


def tracing_interceptor(provider: TracerProvider, *, exporting: bool = True) -> aio.ServerInterceptor:
    """The call-tracing interceptor: recording spans if `exporting`, else trace context only.

    The instrumentation expects response-streaming handlers to be async
    generators; the platform's own interceptors always hand it one (see
    interceptors.base), whatever style the handler is written in.
    """
    if not exporting:
        return TraceContextInterceptor()
    return aio_server_interceptor(tracer_provider=provider, filter_=UNTRACED_SERVICES)


class TraceContextInterceptor(AroundInterceptor):
    """Makes the caller's trace (or a new one) current for the call, recording nothing."""

    def __init__(self) -> None:
        self._propagator = TraceContextTextMapPropagator()
        self._ids = RandomIdGenerator()

    def applies_to(self, method: str) -> bool:
        return not method.startswith(_UNTRACED_PREFIX)

    async def around(self, call: CallInfo, proceed: NextCall) -> Any:
        header = call.metadata(TRACEPARENT_HEADER)
        parent_context = self._propagator.extract({TRACEPARENT_HEADER: header}) if header else context.Context()
        parent = trace.get_current_span(parent_context).get_span_context()
        span = trace.NonRecordingSpan(
            trace.SpanContext(
                trace_id=parent.trace_id if parent.is_valid else self._ids.generate_trace_id(),
                span_id=self._ids.generate_span_id(),
                is_remote=False,
                trace_flags=parent.trace_flags if parent.is_valid else trace.TraceFlags(trace.TraceFlags.DEFAULT),
            )
        )
        token = context.attach(trace.set_span_in_context(span, parent_context))
        try:
            return await proceed()
        finally:
            context.detach(token)
