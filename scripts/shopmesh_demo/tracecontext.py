"""The W3C trace context the demo sends: one trace id for the whole run, a fresh span id per call.

https://www.w3.org/TR/trace-context/#traceparent-header: `00-<trace id>-<parent id>-<flags>`,
32 and 16 lowercase hex digits, neither all zeros; flag 01 asks for the trace to be sampled.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

VERSION = "00"
SAMPLED = "01"


def _nonzero_hex(n_bytes: int) -> str:
    # All zeros is invalid for both ids; a retry is practically never needed.
    while True:
        value = secrets.token_hex(n_bytes)
        if value.strip("0"):
            return value


@dataclass(frozen=True)
class TraceContext:
    """One trace: `traceparent()` gives the header for the next call (a new parent span id each time)."""

    trace_id: str = field(default_factory=lambda: _nonzero_hex(16))

    def __post_init__(self) -> None:
        if len(self.trace_id) != 32 or not self.trace_id.strip("0") or self.trace_id.strip("0123456789abcdef"):
            raise ValueError(f"a trace id is 32 lowercase hex digits, not all zeros: {self.trace_id!r}")

    def traceparent(self) -> str:
        return f"{VERSION}-{self.trace_id}-{_nonzero_hex(8)}-{SAMPLED}"
