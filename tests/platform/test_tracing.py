"""Traces without a collector: log lines carry the current trace, a consumed event
continues the trace of its `traceparent`, a traced server and channel make one
trace of a call, records keep one `traceparent`, and a collector that is down
costs a call nothing and a shutdown a bounded wait.

Spans go to an in-memory exporter of a provider of the test's own (never the
process's global one), so nothing here patches a library.
"""

from __future__ import annotations

import json
import logging
import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from grpc import aio
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from shopmesh.inventory.v1 import inventory_service_pb2 as inventory_pb2
from shopmesh.inventory.v1 import inventory_service_pb2_grpc as inventory_grpc
from shopmesh_platform import traces
from shopmesh_platform.channel import create_channel
from shopmesh_platform.events.envelope import TRACEPARENT, EventHeaders, encode, header
from shopmesh_platform.events.tracing import EVENT_TYPE_ATTRIBUTE, consuming_span
from shopmesh_platform.logs import JsonFormatter
from shopmesh_platform.traces import Tracing, keep_one_traceparent
from tests.conftest import ConfigFactory
from tests.platform.sample_service import SampleInventory, build

PRODUCER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PRODUCER_SPAN = "00f067aa0ba902b7"
TRACEPARENT_VALUE = f"00-{PRODUCER_TRACE}-{PRODUCER_SPAN}-01"


@pytest.fixture
def exported() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    provider = TracerProvider()
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


def log_line(message: str) -> dict[str, object]:
    """What the platform's formatter writes for one record logged now."""
    record = logging.LogRecord("shopmesh.test", logging.INFO, __file__, 1, message, None, None)
    parsed: dict[str, object] = json.loads(JsonFormatter("inventory").format(record))
    return parsed


def hex_ids(span: trace.Span | ReadableSpan) -> tuple[str, str]:
    context = span.get_span_context()
    assert context is not None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")


def test_log_lines_carry_the_trace_and_span_of_the_current_span(
    exported: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, _ = exported
    assert "trace_id" not in log_line("outside")
    with provider.get_tracer("test").start_as_current_span("work") as span:
        inside = log_line("inside")
    trace_id, span_id = hex_ids(span)
    assert (inside["trace_id"], inside["span_id"]) == (trace_id, span_id)


def test_a_consumed_event_continues_the_trace_of_its_traceparent(
    exported: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = exported
    with consuming_span(
        provider.get_tracer("test"),
        topic="user-events",
        group="inventory.x",
        event_id="e-1",
        event_type="shopmesh.user.v1.UserRegistered",
        traceparent=TRACEPARENT_VALUE,
    ):
        inside = log_line("applying")
    [span] = exporter.get_finished_spans()
    assert span.name == "user-events process"
    assert span.kind is trace.SpanKind.CONSUMER
    assert span.parent is not None and span.parent.is_remote
    assert (format(span.parent.trace_id, "032x"), format(span.parent.span_id, "016x")) == (
        PRODUCER_TRACE,
        PRODUCER_SPAN,
    )
    assert hex_ids(span)[0] == PRODUCER_TRACE
    assert span.attributes is not None and span.attributes["messaging.consumer.group.name"] == "inventory.x"
    assert span.attributes[EVENT_TYPE_ATTRIBUTE] == "shopmesh.user.v1.UserRegistered"
    assert (inside["trace_id"], inside["span_id"]) == hex_ids(span)


def test_without_an_exporter_the_handler_still_logs_the_producers_trace() -> None:
    with consuming_span(
        trace.NoOpTracer(),
        topic="user-events",
        group="g",
        event_id="e-1",
        event_type="T",
        traceparent=TRACEPARENT_VALUE,
    ):
        inside = log_line("applying")
    assert inside["trace_id"] == PRODUCER_TRACE


def test_an_event_without_a_traceparent_starts_a_trace_of_its_own(
    exported: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = exported
    tracer = provider.get_tracer("test")
    # Whatever happens to be current (a poll span, say) is not the event's cause.
    with (
        tracer.start_as_current_span("unrelated") as unrelated,
        consuming_span(tracer, topic="t", group="g", event_id="e", event_type="T", traceparent=None),
    ):
        pass
    process = next(s for s in exporter.get_finished_spans() if s.name == "t process")
    assert process.parent is None
    assert hex_ids(process)[0] != hex_ids(unrelated)[0]


async def test_a_record_keeps_only_the_send_spans_traceparent() -> None:
    event_id = str(uuid.uuid4())
    sent = encode("user-events", "u-1", event_id=event_id, event_type="T", payload=b"", traceparent=TRACEPARENT_VALUE)
    send_span = "00-4bf92f3577b34da6a3ce929d0e0e4736-b7ad6b7169203331-01"
    headers = [*sent.headers, (TRACEPARENT, send_span.encode())]  # what the instrumentation appends
    await keep_one_traceparent(None, (), {"headers": headers})
    assert [value for key, value in headers if key == TRACEPARENT] == [send_span.encode()]
    assert EventHeaders.decode(headers).traceparent == send_span
    assert header(headers, "event-id") == event_id


def test_without_an_endpoint_nothing_is_exported_or_patched() -> None:
    tracing = Tracing.for_service("inventory", None)
    assert not tracing.exporting
    assert tracing.client_interceptors() == []
    tracing.instrument_process()  # a no-op: the global provider stays the API's default
    assert not isinstance(trace.get_tracer_provider(), TracerProvider)
    tracing.shutdown()


@pytest.fixture
async def traced_server(
    make_config: ConfigFactory, exported: tuple[TracerProvider, InMemorySpanExporter]
) -> AsyncIterator[tuple[aio.Channel, InMemorySpanExporter]]:
    provider, exporter = exported
    tracing = Tracing(provider, exporting=True)
    config = make_config(SHOPMESH_DRAIN_GRACE_SECONDS="1")
    server = build(config, SampleInventory(), tracing=tracing)
    await server.start()
    channel = create_channel(config, "inventory", address=f"127.0.0.1:{server.grpc_port}", tracing=tracing)
    try:
        yield channel, exporter
    finally:
        await channel.close()
        await server.drain()


async def test_a_traced_call_is_one_trace_client_span_parent_of_server_span(
    traced_server: tuple[aio.Channel, InMemorySpanExporter],
) -> None:
    channel, exporter = traced_server
    await inventory_grpc.InventoryServiceStub(channel).GetProduct(inventory_pb2.GetProductRequest(id="prod-1"))
    spans = exporter.get_finished_spans()
    client = next(s for s in spans if s.kind is trace.SpanKind.CLIENT)
    server = next(s for s in spans if s.kind is trace.SpanKind.SERVER)
    assert server.name == client.name == "/shopmesh.inventory.v1.InventoryService/GetProduct"
    assert server.parent is not None and server.parent.span_id == hex_ids_int(client)[1]
    assert hex_ids(server)[0] == hex_ids(client)[0]
    # Health and reflection are not traced.
    assert all("grpc.health" not in s.name for s in spans)


def hex_ids_int(span: ReadableSpan) -> tuple[int, int]:
    context = span.get_span_context()
    assert context is not None
    return context.trace_id, context.span_id


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_a_collector_that_is_down_costs_calls_nothing_and_shutdown_a_bounded_wait(
    make_config: ConfigFactory,
) -> None:
    config = make_config(
        SHOPMESH_DRAIN_GRACE_SECONDS="1", OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{closed_port()}"
    )
    server = build(config, SampleInventory())
    assert server.tracing.exporting
    await server.start()
    try:
        async with aio.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
            stub = inventory_grpc.InventoryServiceStub(channel)
            for number in range(20):
                reply = await stub.GetProduct(inventory_pb2.GetProductRequest(id=f"prod-{number}"), timeout=5)
                assert reply.id == f"prod-{number}"
    finally:
        started = time.monotonic()
        await server.drain()  # the server owns its Tracing here: it shuts it down
    assert time.monotonic() - started < traces.SHUTDOWN_TIMEOUT_SECONDS + 3
