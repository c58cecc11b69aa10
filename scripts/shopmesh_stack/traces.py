"""Traces read back from Jaeger's query API, and printed as a span tree (`make trace ID=<id>`).

Jaeger built from source has no web UI, so the terminal gets the view: one line per
span, indented under its parent, with the service, the operation (and, for a
consumed event, its type), the span kind and the duration. `GET /api/traces/<trace id>`
on the query port answers the trace's spans with their `CHILD_OF` references
(parents) and their processes (services); a span whose parent is not (yet) in the
trace is printed as a root.

`print_trace(query_url, trace_id)` is the whole command for other tools (the demo):
it waits until the trace has spans and has stopped growing (services export in
batches), then prints its tree.
"""

from __future__ import annotations

import json
import re
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, TextIO

TRACE_ID = re.compile(r"^[0-9a-f]{32}$")
# The consumer span's attribute naming the event it applied (shopmesh_platform.events.tracing).
EVENT_TYPE_TAG = "shopmesh.event.type"


class TraceQueryError(RuntimeError):
    """Jaeger's query API did not answer, or answered something else than a trace."""


@dataclass(frozen=True)
class Span:
    span_id: str
    parent_id: str | None
    service: str
    operation: str
    kind: str
    start_us: int
    duration_us: int
    tags: dict[str, Any]


@dataclass(frozen=True)
class Trace:
    trace_id: str
    spans: tuple[Span, ...]

    def by_id(self, span_id: str) -> Span | None:
        return next((span for span in self.spans if span.span_id == span_id), None)

    def children(self, span: Span) -> list[Span]:
        return sorted((s for s in self.spans if s.parent_id == span.span_id), key=lambda s: s.start_us)

    def roots(self) -> list[Span]:
        """Spans without a parent in the trace, earliest first."""
        known = {span.span_id for span in self.spans}
        return sorted((s for s in self.spans if s.parent_id not in known), key=lambda s: s.start_us)

    def ancestors(self, span: Span) -> Iterator[Span]:
        """Its parent, the parent's parent, ... as far as the trace holds them."""
        seen = {span.span_id}
        current = span
        while current.parent_id is not None and (parent := self.by_id(current.parent_id)) is not None:
            if parent.span_id in seen:  # a reference cycle would be Jaeger's bug; never loop on it
                return
            seen.add(parent.span_id)
            yield parent
            current = parent

    def descends_from(self, span: Span, ancestor: Span) -> bool:
        return any(a.span_id == ancestor.span_id for a in self.ancestors(span))

    @property
    def services(self) -> set[str]:
        return {span.service for span in self.spans}


def parse_trace(document: dict[str, Any]) -> Trace | None:
    """The trace in a `/api/traces/<id>` answer; None when it holds none."""
    data = document.get("data") or []
    if not data:
        return None
    found = data[0]
    processes = {key: value.get("serviceName", "?") for key, value in (found.get("processes") or {}).items()}
    spans = []
    for raw in found.get("spans") or []:
        parents = [
            ref["spanID"]
            for ref in raw.get("references") or []
            if ref.get("refType") == "CHILD_OF" and ref.get("traceID") == found["traceID"]
        ]
        tags = {tag["key"]: tag.get("value") for tag in raw.get("tags") or []}
        spans.append(
            Span(
                span_id=raw["spanID"],
                parent_id=parents[0] if parents else None,
                service=processes.get(raw.get("processID", ""), "?"),
                operation=raw.get("operationName", ""),
                kind=str(tags.get("span.kind", "internal")),
                start_us=int(raw.get("startTime", 0)),
                duration_us=int(raw.get("duration", 0)),
                tags=tags,
            )
        )
    return Trace(found["traceID"], tuple(spans))


def fetch_trace(query_url: str, trace_id: str, *, timeout: float = 5.0) -> Trace | None:
    """The trace as Jaeger holds it now; None if it has none of its spans (yet)."""
    if not TRACE_ID.match(trace_id):
        raise ValueError(f"{trace_id!r} is not a trace id (32 lower-case hex digits)")
    try:
        with urllib.request.urlopen(f"{query_url}/api/traces/{trace_id}", timeout=timeout) as response:
            document = json.loads(response.read())
    except urllib.error.HTTPError as error:
        if error.code == 404:
            return None
        raise TraceQueryError(f"jaeger query API: HTTP {error.code} for trace {trace_id}") from error
    except (OSError, ValueError) as error:
        raise TraceQueryError(f"jaeger query API at {query_url}: {error}") from error
    return parse_trace(document)


def _duration(microseconds: int) -> str:
    if microseconds >= 1_000_000:
        return f"{microseconds / 1_000_000:.2f} s"
    return f"{microseconds / 1000:.1f} ms"


def render_tree(found: Trace) -> str:
    """The span tree: `service  operation  [kind]  duration`, children indented under parents."""
    lines = [f"trace {found.trace_id}: {len(found.spans)} spans, services: {', '.join(sorted(found.services))}"]

    first = min((span.start_us for span in found.spans), default=0)

    def walk(span: Span, depth: int) -> None:
        offset_ms = (span.start_us - first) / 1000
        event_type = span.tags.get(EVENT_TYPE_TAG)
        operation = f"{span.operation} {str(event_type).rsplit('.', 1)[-1]}" if event_type else span.operation
        lines.append(
            f"{'  ' * depth}{span.service}  {operation}  [{span.kind}]  "
            f"{_duration(span.duration_us)}  (+{offset_ms:.1f} ms)"
        )
        for child in found.children(span):
            walk(child, depth + 1)

    for root in found.roots():
        walk(root, 1)
    return "\n".join(lines)


def settled_trace(query_url: str, trace_id: str, *, timeout: float, quiet: float = 3.0) -> Trace | None:
    """The trace once it has spans and no new one arrived for `quiet` seconds; at `timeout`, what there is.

    Spans reach Jaeger in batches from each service, and events are consumed a
    little after the call that caused them, so a trace read at once may be partial.
    """
    deadline = time.monotonic() + timeout
    found, count, since = None, -1, time.monotonic()
    while True:
        found = fetch_trace(query_url, trace_id)
        now = time.monotonic()
        spans = len(found.spans) if found else 0
        if spans != count:
            count, since = spans, now
        elif found is not None and now - since >= quiet:
            return found
        if now >= deadline:
            return found
        time.sleep(0.5)


def print_trace(
    query_url: str, trace_id: str, *, wait: float = 0.0, out: TextIO = sys.stdout, err: TextIO = sys.stderr
) -> bool:
    """Print the span tree of `trace_id` from the Jaeger query API at `query_url`; False if it has none.

    With `wait` > 0, waits up to that many seconds for the trace to arrive and stop growing.
    """
    trace_id = trace_id.strip().lower()
    found = settled_trace(query_url, trace_id, timeout=wait) if wait > 0 else fetch_trace(query_url, trace_id)
    if found is None:
        print(f"jaeger at {query_url} has no trace {trace_id} (yet)", file=err)
        return False
    print(render_tree(found), file=out)
    return True
