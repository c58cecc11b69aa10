"""The demo's HTTP client: every call carries the run's `traceparent`; replies are JSON.

Calls are never retried: the demo shows what happened, and a step that does not
happen fails the run (`DemoFailure`). Waiting for the saga polls with a deadline
and a growing interval, so even a slow stack stays inside the edge's default
per-client budgets (mesh/mesh.yaml `edge.rate_limits`).
"""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from shopmesh_demo.tracecontext import TraceContext

# Long enough for the slowest route's own timeout at the edge (20 s), so the edge answers first.
CALL_TIMEOUT_SECONDS = 30.0
FIRST_POLL_INTERVAL_SECONDS = 0.25
MAX_POLL_INTERVAL_SECONDS = 2.0


class DemoFailure(Exception):
    """A step did not happen; the message says what was expected and what came back."""


@dataclass(frozen=True)
class Reply:
    """One HTTP exchange: what was called, the status, the decoded JSON body (None when it is not JSON)."""

    method: str
    target: str
    status: int
    body: Any
    text: str

    @property
    def call(self) -> str:
        return f"{self.method} {self.target} -> {self.status}"

    def expect(self, status: int = 200) -> dict[str, Any]:
        """The JSON object of a reply with `status`; anything else fails the step."""
        if self.status != status or not isinstance(self.body, dict):
            raise DemoFailure(f"{self.call}, expected {status} with a JSON object: {self.text[:300]}")
        return self.body


def _target(url: httpx.URL) -> str:
    """Path and query as a person would type them (percent-decoded)."""
    query = url.query.decode()
    return urllib.parse.unquote(url.path + (f"?{query}" if query else ""))


class Client:
    """HTTP calls against base URLs, each with a fresh span id of the one trace."""

    def __init__(self, trace: TraceContext, http: httpx.Client | None = None) -> None:
        self.trace = trace
        self._http = http or httpx.Client(timeout=CALL_TIMEOUT_SECONDS)

    def close(self) -> None:
        self._http.close()

    def call(
        self,
        method: str,
        url: str,
        *,
        body: Mapping[str, Any] | None = None,
        params: Mapping[str, str | int] | None = None,
        token: str | None = None,
    ) -> Reply:
        headers = {"traceparent": self.trace.traceparent()}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        request = self._http.build_request(method, url, json=body, params=params, headers=headers)
        try:
            response = self._http.send(request)
        except httpx.HTTPError as exc:
            raise DemoFailure(f"{method} {_target(request.url)}: no answer ({exc!r})") from exc
        try:
            decoded: Any = response.json()
        except ValueError:
            decoded = None
        return Reply(method, _target(request.url), response.status_code, decoded, response.text)


@dataclass(frozen=True)
class Polled:
    """The reply that met the condition, after how many calls and seconds."""

    reply: Reply
    calls: int
    seconds: float

    @property
    def summary(self) -> str:
        return f"after {self.calls} call{'s' if self.calls != 1 else ''}, {self.seconds:.1f} s"


def poll(call: Callable[[], Reply], done: Callable[[dict[str, Any]], bool], *, deadline: float, what: str) -> Polled:
    """Repeat `call` until its 200 JSON body is `done`; fail at the deadline or on any other status."""
    started = time.monotonic()
    interval, calls = FIRST_POLL_INTERVAL_SECONDS, 0
    while True:
        reply = call()
        calls += 1
        if done(reply.expect(200)):
            return Polled(reply, calls, time.monotonic() - started)
        if time.monotonic() - started > deadline:
            raise DemoFailure(f"{what}: not within {deadline:.0f} s ({calls} calls); last: {reply.text[:300]}")
        time.sleep(interval)
        interval = min(interval * 1.5, MAX_POLL_INTERVAL_SECONDS)
