"""The demo's pure parts: its trace context, its call targets, its failure and trace-print handling."""

from __future__ import annotations

import io
import re
import socket
import sys

import httpx

from shopmesh_demo.__main__ import run
from shopmesh_demo.client import Client, poll
from shopmesh_demo.endpoints import Endpoints
from shopmesh_demo.story import REGISTER, StoryConfig
from shopmesh_demo.trace import TRACE_WAIT_SECONDS, print_trace, trace_command
from shopmesh_demo.tracecontext import TraceContext
from shopmesh_stack.settings import StackSettings

TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-01$")


def test_every_call_carries_the_one_trace_id_with_a_fresh_span_id() -> None:
    trace = TraceContext()
    headers = [trace.traceparent() for _ in range(50)]
    parsed = [TRACEPARENT.match(h) for h in headers]
    assert all(parsed), headers
    assert {m.group(1) for m in parsed if m} == {trace.trace_id}
    assert len({m.group(2) for m in parsed if m}) == 50
    assert TraceContext().trace_id != trace.trace_id


def test_a_trace_id_that_w3c_forbids_is_refused() -> None:
    for bad in ("0" * 32, "ABC" + "0" * 29 + "1", "12345"):
        try:
            TraceContext(bad)
        except ValueError:
            continue
        raise AssertionError(f"accepted {bad!r}")


def test_the_client_sends_the_traceparent_and_prints_the_decoded_target() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"ok": True})

    trace = TraceContext()
    client = Client(trace, httpx.Client(transport=httpx.MockTransport(answer)))
    reply = client.call("GET", "http://mail/api/v1/search", params={"query": "to:a@example.com"}, token="t")
    assert reply.call == "GET /api/v1/search?query=to:a@example.com -> 200"
    assert reply.expect() == {"ok": True}
    match = TRACEPARENT.match(seen[0].headers["traceparent"])
    assert match and match.group(1) == trace.trace_id
    assert seen[0].headers["authorization"] == "Bearer t"


def test_a_poll_fails_on_an_unexpected_status_instead_of_waiting() -> None:
    client = Client(TraceContext(), httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(500))))
    try:
        poll(lambda: client.call("GET", "http://edge/x"), lambda body: True, deadline=60, what="x")
    except Exception as exc:
        assert "GET /x -> 500, expected 200" in str(exc)
    else:
        raise AssertionError("a 500 passed")


def test_the_endpoints_follow_the_stack_port_variables() -> None:
    settings = StackSettings.from_env({"SHOPMESH_PORT_EDGE": "18080", "SHOPMESH_PORT_MAILPIT_HTTP": "18025"})
    assert Endpoints.of(settings) == Endpoints("http://127.0.0.1:18080", "http://127.0.0.1:18025")


def test_without_an_edge_the_demo_fails_at_its_first_step() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        nowhere = f"http://127.0.0.1:{unused.getsockname()[1]}"
        out = io.StringIO()
        status = run(Endpoints(nowhere, nowhere), StoryConfig(wait_seconds=1), out)
    assert status == 1
    assert f"[1] {REGISTER}" in out.getvalue()
    assert "FAILED at step 1: POST /api/v1/users/register: no answer" in out.getvalue()
    assert "demo complete" not in out.getvalue()


def test_the_trace_print_reports_a_failing_or_missing_printer() -> None:
    assert trace_command("ab" * 16)[1:] == [
        "-m",
        "shopmesh_stack",
        "trace",
        "ab" * 16,
        "--wait",
        str(TRACE_WAIT_SECONDS),
    ]
    assert print_trace("ab" * 16, [sys.executable, "-c", "raise SystemExit(3)"]) == 3
    assert print_trace("ab" * 16, ["/nonexistent/printer"]) == -1
    assert print_trace("ab" * 16, [sys.executable, "-c", "pass"]) == 0
