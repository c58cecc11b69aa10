"""The edge client of the chaos load: REST over httpx, retried like a real client, every request counted.

A request that fails during a fault (no connection, reset, 502/503/504, 429, and
500 too: a real client cannot tell a crash from a bug) is sent again with the
same body, so with the same request id, after a growing pause, until its
budget runs out. Each logical request ends in one outcome: `ok`, `4xx <reason>`
(a definite refusal) or `gave up <last error>`. A 500 is counted separately
whatever the request ended in: the platform promises none.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx

RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
FIRST_PAUSE_SECONDS = 0.2
MAX_PAUSE_SECONDS = 2.0
ATTEMPT_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class Reply:
    """The final answer to one logical request."""

    status: int  # 0 when the request gave up without an HTTP answer
    body: Any
    outcome: str

    @property
    def ok(self) -> bool:
        return self.status == 200


@dataclass
class RequestLog:
    """Every logical request and attempt, by operation."""

    outcomes: Counter[tuple[str, str]] = field(default_factory=Counter)
    attempts: Counter[str] = field(default_factory=Counter)
    retried_errors: Counter[tuple[str, str]] = field(default_factory=Counter)
    internal_errors: list[str] = field(default_factory=list)

    def requests(self, operation: str) -> int:
        return sum(n for (op, _), n in self.outcomes.items() if op == operation)

    def gave_up(self) -> list[tuple[str, str, int]]:
        return [(op, outcome, n) for (op, outcome), n in self.outcomes.items() if outcome.startswith("gave up")]

    def table(self) -> str:
        operations = sorted({op for op, _ in self.outcomes})
        lines = [f"{'operation':<14} {'requests':>8} {'attempts':>8}  outcomes (retried errors)"]
        for op in operations:
            outcomes = ", ".join(f"{o} {n}" for (o_op, o), n in sorted(self.outcomes.items()) if o_op == op)
            retried = ", ".join(f"{e} {n}" for (e_op, e), n in sorted(self.retried_errors.items()) if e_op == op)
            lines.append(
                f"{op:<14} {self.requests(op):>8} {self.attempts[op]:>8}  {outcomes}"
                + (f" ({retried})" if retried else "")
            )
        return "\n".join(lines)


def _reason(body: Any) -> str:
    """The ErrorInfo reason of a google.rpc.Status body, if there is one."""
    if isinstance(body, dict):
        for detail in body.get("details") or []:
            if isinstance(detail, dict) and detail.get("reason"):
                return str(detail["reason"])
    return "no reason"


class EdgeClient:
    """Calls the edge, retrying failures with the same request, within a budget per logical request."""

    def __init__(self, edge_url: str, log: RequestLog, *, retry_budget_seconds: float) -> None:
        self._http = httpx.AsyncClient(
            base_url=edge_url,
            timeout=ATTEMPT_TIMEOUT_SECONDS,
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=32),
        )
        self._log = log
        self._budget = retry_budget_seconds

    async def close(self) -> None:
        await self._http.aclose()

    async def call(self, operation: str, method: str, path: str, body: Any = None, token: str | None = None) -> Reply:
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        content = None if body is None else json.dumps(body)
        deadline = time.monotonic() + self._budget
        pause = FIRST_PAUSE_SECONDS
        last_error = ""
        while True:
            self._log.attempts[operation] += 1
            try:
                response = await self._http.request(method, path, content=content, headers=headers)
            except httpx.TransportError as error:
                last_error = type(error).__name__
            else:
                parsed = _json(response)
                if response.status_code == 500:
                    self._log.internal_errors.append(f"{operation} {method} {path}: {_reason(parsed)}")
                if response.status_code not in RETRYABLE_STATUSES:
                    outcome = "ok" if response.status_code == 200 else f"{response.status_code} {_reason(parsed)}"
                    self._log.outcomes[(operation, outcome)] += 1
                    return Reply(response.status_code, parsed, outcome)
                last_error = f"{response.status_code} {_reason(parsed)}"
            self._log.retried_errors[(operation, last_error)] += 1
            if time.monotonic() + pause > deadline:
                outcome = f"gave up ({last_error})"
                self._log.outcomes[(operation, outcome)] += 1
                return Reply(0, None, outcome)
            await asyncio.sleep(pause)
            pause = min(pause * 2, MAX_PAUSE_SECONDS)


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None
