"""HTTP GET over a Unix socket: how the stack tool reads Envoy's admin interface.

Envoy's admin listens only on a Unix socket (mode 0600, see the edge renderer),
so readiness and stats probes speak HTTP/1.1 over that socket with the standard
library's client.
"""

from __future__ import annotations

import http.client
import socket
from pathlib import Path


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(str(self._path))
        except OSError:
            sock.close()
            raise
        self.sock = sock


def admin_get(path: Path, target: str, timeout: float = 2.0) -> tuple[int, str]:
    """GET `target` from the HTTP server on the Unix socket `path`: (status, body)."""
    connection = _UnixConnection(path, timeout)
    try:
        connection.request("GET", target)
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()
