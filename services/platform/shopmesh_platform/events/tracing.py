"""How a consumed event continues the trace of the call that caused it.

The record's W3C `traceparent` header (see events.envelope) names the span that
sent it (aiokafka's send span when tracing exports, else the calling span). The
consumer's span for the event is that span's child, of kind CONSUMER, in the same
trace, so one trace holds the request and every effect it caused downstream.
Without an exporter the span does not record, but it is still the current
one: the handler's log lines carry the producer's trace id.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from opentelemetry import propagate, trace
from opentelemetry.context import Context

from shopmesh_platform.events.envelope import TRACEPARENT

EVENT_TYPE_ATTRIBUTE = "shopmesh.event.type"


def producer_context(traceparent: str | None) -> Context:
    """The context a record's `traceparent` names; an empty one (a new trace) without a valid one."""
    if not traceparent:
        return Context()
    return propagate.extract({TRACEPARENT: traceparent})


@contextmanager
def consuming_span(
    tracer: trace.Tracer, *, topic: str, group: str, event_id: str, event_type: str, traceparent: str | None
) -> Iterator[trace.Span]:
    """The current span while one event's effect runs: `<topic> process`, child of the producer's."""
    with tracer.start_as_current_span(
        f"{topic} process",
        context=producer_context(traceparent),
        kind=trace.SpanKind.CONSUMER,
        attributes={
            "messaging.system": "kafka",
            "messaging.operation.type": "process",
            "messaging.destination.name": topic,
            "messaging.consumer.group.name": group,
            "messaging.message.id": event_id,
            # Which event it is (a topic carries several types): what a reader of the trace asks first.
            EVENT_TYPE_ATTRIBUTE: event_type,
        },
    ) as span:
        yield span
