"""OpenTelemetry tracing of every call.

Spans are always created, so incoming `traceparent` headers are continued and
log lines carry trace ids; they are exported over OTLP only when
OTEL_EXPORTER_OTLP_ENDPOINT is configured.
"""

from __future__ import annotations

from grpc import aio
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.grpc import aio_server_interceptor, filters
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor


def build_tracer_provider(service_name: str, otlp_endpoint: str | None) -> TracerProvider:
    """A provider for one service; exporting only if an endpoint is given."""
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: f"shopmesh-{service_name}"}))
    if otlp_endpoint:
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=otlp_endpoint)))
    return provider


def tracing_interceptor(provider: TracerProvider) -> aio.ServerInterceptor:
    """The opentelemetry-instrumentation-grpc server interceptor bound to `provider`.

    Platform services (grpc.health, grpc.reflection) are not traced: they are
    noise in traces. The instrumentation expects response-streaming handlers to
    be async generators; the platform's own interceptors always hand it one
    (see interceptors.base), whatever style the handler is written in.
    """
    return aio_server_interceptor(tracer_provider=provider, filter_=filters.negate(filters.service_prefix("grpc.")))
