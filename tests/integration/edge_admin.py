"""Read the running edge's state from Envoy's admin endpoint (e.g. `/config_dump`).

Where the admin listens is decided in one place, `edge_admin_address`: today the
TCP port `Edge.admin_port`; when the admin moves to a Unix socket in the stack's
data directory, return that socket's Path there and every caller follows.
"""

from __future__ import annotations

import http.client
import json
import socket
from pathlib import Path
from typing import Any

from shopmesh_stack.stack import Stack

AdminAddress = int | Path


def edge_admin_address(stack: Stack) -> AdminAddress:
    """The session edge's admin endpoint: a TCP port on 127.0.0.1, or a Unix socket path."""
    return stack.edge.admin_port


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(str(self._path))


def admin_get(address: AdminAddress, path: str, timeout: float = 10.0) -> bytes:
    """GET `path` from an Envoy admin endpoint; a non-200 answer raises."""
    connection: http.client.HTTPConnection = (
        _UnixConnection(address, timeout)
        if isinstance(address, Path)
        else http.client.HTTPConnection("127.0.0.1", address, timeout=timeout)
    )
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read()
    finally:
        connection.close()
    if response.status != 200:
        raise RuntimeError(f"envoy admin {path}: HTTP {response.status}: {body[:200]!r}")
    return body


def config_dump(address: AdminAddress, resource: str) -> list[dict[str, Any]]:
    """The entries of one `/config_dump?resource=...` section (e.g. static_route_configs)."""
    dump = json.loads(admin_get(address, f"/config_dump?resource={resource}"))
    return list(dump.get("configs", []))
