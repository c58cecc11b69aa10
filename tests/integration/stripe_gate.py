"""A gate between the payments service and localstripe that holds the first PaymentIntent
confirmation, so a test can crash a service at an exact point of a payment.

Payments is restarted with SHOPMESH_STRIPE_API_BASE pointing here; every request is
forwarded to localstripe unchanged, except the first `POST /v1/payment_intents/<id>/confirm`:

- `DROP`: held and never forwarded (the PaymentIntent stays `requires_confirmation`):
  payments is between creating and confirming;
- `ANSWER_HELD`: forwarded, localstripe's answer withheld: the charge happened (and
  localstripe's webhook is on its way) but payments never learns it from the API;
- `UNTIL_RELEASED`: held until `release()`, then forwarded and answered.

No production code knows about it: the crash it allows is a real SIGKILL of the real
service while its confirm call is in flight.
"""

from __future__ import annotations

import enum
import http.client
import re
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CONFIRM = re.compile(r"^/v1/payment_intents/[^/?]+/confirm")
# Hop-by-hop headers (and the length, recomputed) are not forwarded.
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}
# Longest a held request waits for `release()` or `close()`.
HOLD_LIMIT_SECONDS = 120.0


class GateMode(enum.Enum):
    DROP = "drop"
    ANSWER_HELD = "answer_held"
    UNTIL_RELEASED = "until_released"


class StripeGate:
    """Start with `open()`, point payments at `url`, wait on `confirm_held`, then `close()`."""

    def __init__(self, upstream: str, mode: GateMode) -> None:
        parsed = urllib.parse.urlsplit(upstream)
        assert parsed.hostname is not None and parsed.port is not None, upstream
        self._upstream = (parsed.hostname, parsed.port)
        self.mode = mode
        # Set once the first confirm is held (for ANSWER_HELD: once localstripe has answered it).
        self.confirm_held = threading.Event()
        self._released = threading.Event()
        self._claimed = threading.Lock()
        self._gated = False
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="stripe-gate", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def open(self) -> StripeGate:
        self._thread.start()
        return self

    def release(self) -> None:
        """Let the held confirmation go on (UNTIL_RELEASED); the others end without an answer."""
        self._released.set()

    def close(self) -> None:
        self._released.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def _take_gate(self, method: str, path: str) -> bool:
        """Whether this request is the one confirmation to hold."""
        if method != "POST" or not CONFIRM.match(path):
            return False
        with self._claimed:
            if self._gated:
                return False
            self._gated = True
            return True

    def _forward(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        connection = http.client.HTTPConnection(*self._upstream, timeout=30)
        try:
            connection.request(method, path, body=body or None, headers=headers)
            response = connection.getresponse()
            return response.status, response.getheaders(), response.read()
        finally:
            connection.close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        gate = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                """Quiet: requests carry card data and keys."""

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                if gate._take_gate(self.command, self.path):
                    if gate.mode is GateMode.DROP:
                        gate.confirm_held.set()
                        gate._released.wait(HOLD_LIMIT_SECONDS)
                        self.close_connection = True
                        return
                    if gate.mode is GateMode.ANSWER_HELD:
                        gate._forward(self.command, self.path, headers, body)
                        gate.confirm_held.set()
                        gate._released.wait(HOLD_LIMIT_SECONDS)
                        self.close_connection = True
                        return
                    gate.confirm_held.set()
                    gate._released.wait(HOLD_LIMIT_SECONDS)
                status, reply_headers, reply = gate._forward(self.command, self.path, headers, body)
                self.send_response(status)
                for name, value in reply_headers:
                    if name.lower() not in HOP_BY_HOP:
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            do_GET = do_POST = do_DELETE = _serve

        return Handler
