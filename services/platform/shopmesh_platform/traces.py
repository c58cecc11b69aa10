"""Trace export for one service: the tracer provider, OTLP, and the libraries' instrumentation.

With OTEL_EXPORTER_OTLP_ENDPOINT set (`PlatformConfig.otlp_endpoint`), `Tracing.for_service`
builds an SDK provider that exports spans in batches over OTLP/gRPC; the server
records a span per call (interceptors.tracing) and channels a span per outgoing
call (`client_interceptors`). `instrument_process()` then makes it the
process's provider and instruments asyncpg, PyMongo and aiokafka with it: the
Runtime does this once, before it opens a store (PyMongo's instrumentation only
sees clients created after it). Instrumentation is process-wide by nature (it
patches the libraries' classes), so one process traces as one service.

Without an endpoint nothing is recorded and nothing is patched: calls carry
trace context only, for the logs (see interceptors.tracing), so tracing costs
about nothing.

A collector that is down or slow never reaches a call: spans are queued and
exported by the batch processor's own thread, dropped when its queue is full,
each export gives up after EXPORT_TIMEOUT_SECONDS, and `shutdown()` waits at most
SHUTDOWN_TIMEOUT_SECONDS for what is still queued.

Kafka: the event envelope carries the W3C `traceparent` of the call that wrote
the event; the producer sends with that context current, so aiokafka's send
span joins the call's trace, and `keep_one_traceparent` leaves the send span's
`traceparent` as the record's only one (the instrumentation appends its own).
Consumers continue it (events.consumer).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.aiokafka import AIOKafkaInstrumentor
from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
from opentelemetry.instrumentation.grpc import aio_client_interceptors, filters
from opentelemetry.instrumentation.pymongo import PymongoInstrumentor
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from shopmesh_platform.events.envelope import TRACEPARENT

logger = logging.getLogger("shopmesh.traces")

EXPORT_TIMEOUT_SECONDS = 2.0
SHUTDOWN_TIMEOUT_SECONDS = 3.0
# grpc.health and grpc.reflection calls are noise in traces, on either side.
UNTRACED_SERVICES = filters.negate(filters.service_prefix("grpc."))


def service_resource(service_name: str) -> Resource:
    """What Jaeger shows as the service: `shopmesh-<name>`."""
    return Resource.create({SERVICE_NAME: f"shopmesh-{service_name}"})


class Tracing:
    """One service's tracer provider; exporting only when an OTLP endpoint is configured."""

    def __init__(self, provider: TracerProvider, *, exporting: bool) -> None:
        self.provider = provider
        self.exporting = exporting
        self._stopped = False

    @classmethod
    def for_service(cls, service_name: str, otlp_endpoint: str | None) -> Tracing:
        # Shut down by its owner (server or runtime) with a bounded wait, not at interpreter exit.
        provider = TracerProvider(resource=service_resource(service_name), shutdown_on_exit=False)
        if not otlp_endpoint:
            return cls(provider, exporting=False)
        exporter = OTLPSpanExporter(endpoint=otlp_endpoint, timeout=EXPORT_TIMEOUT_SECONDS)
        provider.add_span_processor(BatchSpanProcessor(exporter))
        return cls(provider, exporting=True)

    def instrument_process(self) -> None:
        """When exporting: this provider for the whole process, asyncpg, PyMongo and aiokafka traced."""
        if not self.exporting:
            return
        trace.set_tracer_provider(self.provider)
        AsyncPGInstrumentor().instrument(tracer_provider=self.provider)
        PymongoInstrumentor().instrument(tracer_provider=self.provider)
        AIOKafkaInstrumentor().instrument(tracer_provider=self.provider, async_produce_hook=keep_one_traceparent)

    def client_interceptors(self) -> list[Any]:
        """Interceptors for a channel: a client span per call, its context sent as `traceparent`."""
        if not self.exporting:
            return []
        return list(aio_client_interceptors(tracer_provider=self.provider, filter_=UNTRACED_SERVICES))

    def shutdown(self) -> None:
        """Export what is queued, then stop; blocks at most SHUTDOWN_TIMEOUT_SECONDS (call it last).

        With the collector down the SDK would retry for longer; what is left then is dropped.
        """
        if self._stopped:
            return
        self._stopped = True
        stopping = threading.Thread(target=self.provider.shutdown, name="traces-shutdown", daemon=True)
        stopping.start()
        stopping.join(SHUTDOWN_TIMEOUT_SECONDS)
        if stopping.is_alive():
            logger.warning("trace export did not finish in time; queued spans dropped")


async def keep_one_traceparent(span: Any, args: Sequence[Any], kwargs: dict[str, Any]) -> None:
    """aiokafka's produce hook: keep only the last `traceparent` header, the send span's own.

    The envelope already wrote the calling span's; a record with two would leave
    it to each reader which one it continues.
    """
    headers = kwargs.get("headers")
    if not isinstance(headers, list):
        return
    positions = [index for index, (key, _) in enumerate(headers) if key == TRACEPARENT]
    for index in reversed(positions[:-1]):
        del headers[index]
