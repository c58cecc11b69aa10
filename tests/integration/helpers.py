"""Small clients for integration tests: HTTP through the edge, gRPC health, grpcurl."""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from shopmesh_stack.channels import grpcurl_tls_flags, health_status
from shopmesh_stack.stack import Stack

__all__ = ["HttpReply", "grpcurl", "grpcurl_tls_flags", "health_status", "http"]


@dataclass(frozen=True)
class HttpReply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def http(
    stack: Stack, method: str, path: str, body: bytes | str | None = None, headers: dict[str, str] | None = None
) -> HttpReply:
    """One request to the edge; HTTP errors are returned, not raised."""
    data = body.encode() if isinstance(body, str) else body
    request = urllib.request.Request(
        f"{stack.settings.edge_url}{path}",
        data=data,
        method=method,
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            return HttpReply(response.status, dict(response.headers), response.read())
    except urllib.error.HTTPError as error:
        return HttpReply(error.code, dict(error.headers), error.read())


def grpcurl(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the stack's grpcurl with a deadline; output captured as text."""
    return subprocess.run(
        [str(stack.installed.grpcurl), "-max-time", "10", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
