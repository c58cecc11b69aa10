"""`make trace`: a Jaeger `/api/traces/<id>` answer parsed into a span tree and printed."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from shopmesh_stack.traces import EVENT_TYPE_TAG, fetch_trace, parse_trace, print_trace, render_tree

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
REGISTER = "/shopmesh.user.v1.UserService/RegisterUser"


def span(
    span_id: str,
    operation: str,
    process: str,
    *,
    start: int,
    duration: int,
    parent: str | None,
    kind: str,
    event_type: str | None = None,
) -> Any:
    references = [{"refType": "CHILD_OF", "traceID": TRACE, "spanID": parent}] if parent else []
    tags = [{"key": "span.kind", "type": "string", "value": kind}]
    if event_type:
        tags.append({"key": EVENT_TYPE_TAG, "type": "string", "value": event_type})
    return {
        "traceID": TRACE,
        "spanID": span_id,
        "operationName": operation,
        "references": references,
        "startTime": start,
        "duration": duration,
        "tags": tags,
        "processID": process,
    }


DOCUMENT: dict[str, Any] = {
    "data": [
        {
            "traceID": TRACE,
            "spans": [
                # Out of order, as Jaeger may answer them.
                span(
                    "c",
                    "user-events process",
                    "p2",
                    start=1_050_000,
                    duration=4_000,
                    parent="b",
                    kind="consumer",
                    event_type="shopmesh.user.v1.UserRegistered",
                ),
                span("a", REGISTER, "p1", start=1_000_000, duration=30_000, parent=None, kind="server"),
                span("b", "user-events send", "p1", start=1_040_000, duration=1_500, parent="a", kind="producer"),
                span("d", "INSERT", "p1", start=1_010_000, duration=2_000, parent="a", kind="client"),
            ],
            "processes": {"p1": {"serviceName": "shopmesh-users"}, "p2": {"serviceName": "shopmesh-inventory"}},
        }
    ]
}


def test_the_tree_nests_children_under_parents_in_start_order() -> None:
    found = parse_trace(DOCUMENT)
    assert found is not None
    [root] = found.roots()
    assert (root.service, root.operation, root.kind) == ("shopmesh-users", root.operation, "server")
    consumer = found.by_id("c")
    assert consumer is not None and found.descends_from(consumer, root)
    assert [s.span_id for s in found.ancestors(consumer)] == ["b", "a"]
    lines = render_tree(found).splitlines()
    assert lines[0] == f"trace {TRACE}: 4 spans, services: shopmesh-inventory, shopmesh-users"
    assert [line.split("  [")[0] for line in lines[1:]] == [
        f"  shopmesh-users  {REGISTER}",
        "    shopmesh-users  INSERT",
        "    shopmesh-users  user-events send",
        "      shopmesh-inventory  user-events process UserRegistered",
    ]
    assert lines[1].endswith("[server]  30.0 ms  (+0.0 ms)")
    assert lines[4].endswith("[consumer]  4.0 ms  (+50.0 ms)")


def test_a_span_whose_parent_is_missing_prints_as_a_root() -> None:
    document = {"data": [{**DOCUMENT["data"][0], "spans": [DOCUMENT["data"][0]["spans"][0]]}]}
    found = parse_trace(document)
    assert found is not None and [s.span_id for s in found.roots()] == ["c"]


def test_an_answer_without_data_is_no_trace() -> None:
    assert parse_trace({"data": None, "errors": [{"code": 404, "msg": "trace not found"}]}) is None


def test_a_trace_id_must_be_32_hex_digits() -> None:
    with pytest.raises(ValueError, match="not a trace id"):
        fetch_trace("http://127.0.0.1:1", "not-a-trace")


class GrowingJaeger(BaseHTTPRequestHandler):
    """Answers TRACE with one more of DOCUMENT's spans per request (spans arrive in batches), others 404."""

    served = 0

    def do_GET(self) -> None:
        if self.path != f"/api/traces/{TRACE}":
            self.send_response(404)
            self.end_headers()
            return
        spans = DOCUMENT["data"][0]["spans"]
        GrowingJaeger.served = min(GrowingJaeger.served + 1, len(spans))
        body = json.dumps({"data": [{**DOCUMENT["data"][0], "spans": spans[: GrowingJaeger.served]}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def jaeger_query() -> Iterator[str]:
    GrowingJaeger.served = 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), GrowingJaeger)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_print_trace_waits_until_the_trace_stops_growing(jaeger_query: str) -> None:
    out = io.StringIO()
    assert print_trace(jaeger_query, TRACE.upper(), wait=30, out=out)
    assert out.getvalue().startswith(f"trace {TRACE}: 4 spans,")


def test_print_trace_without_waiting_prints_what_there_is(jaeger_query: str) -> None:
    out = io.StringIO()
    assert print_trace(jaeger_query, TRACE, out=out)
    assert out.getvalue().startswith(f"trace {TRACE}: 1 spans,")


def test_print_trace_of_an_unknown_trace_says_so(jaeger_query: str) -> None:
    out, err = io.StringIO(), io.StringIO()
    assert not print_trace(jaeger_query, "0" * 32, out=out, err=err)
    assert out.getvalue() == "" and f"has no trace {'0' * 32}" in err.getvalue()
