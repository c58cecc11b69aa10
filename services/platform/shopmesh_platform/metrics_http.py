"""The Prometheus endpoint of a service: prometheus_client's WSGI app on a port that can be shared.

prometheus_client's own `start_http_server` cannot set SO_REUSEPORT, which a
replacement process needs to listen on the metrics port beside the process it
replaces (the local stack's rolling restart); this is the same server with that
one option (Python 3.11's `socketserver.allow_reuse_port`).
"""

from __future__ import annotations

import socket
import threading
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer


class _QuietHandler(WSGIRequestHandler):
    """No access log line per scrape."""

    def log_message(self, format: str, *args: Any) -> None:
        pass


class MetricsEndpoint:
    """`GET /metrics` of a registry on host:port, served by a daemon thread until `close()`."""

    def __init__(self, host: str, port: int, registry: CollectorRegistry, *, reuse_port: bool) -> None:
        server_class = type(
            "MetricsServer",
            (ThreadingWSGIServer,),
            {
                "address_family": socket.AF_INET6 if ":" in host else socket.AF_INET,
                "allow_reuse_port": reuse_port,
            },
        )
        self._httpd: WSGIServer = make_server(
            host, port, make_wsgi_app(registry), server_class, handler_class=_QuietHandler
        )
        self.port: int = self._httpd.server_port
        threading.Thread(target=self._httpd.serve_forever, name=f"metrics-{self.port}", daemon=True).start()

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
