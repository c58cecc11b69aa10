"""Read the running edge's state from Envoy's admin interface (e.g. `/config_dump`).

The admin listens only on a Unix socket in the edge's directory (mode 0600);
`shopmesh_stack.admin_socket.admin_get` speaks HTTP over it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from shopmesh_stack.admin_socket import admin_get
from shopmesh_stack.stack import Stack


def edge_admin_address(stack: Stack) -> Path:
    """The session edge's admin socket."""
    return stack.edge.admin_socket


def config_dump(address: Path, resource: str) -> list[dict[str, Any]]:
    """The entries of one `/config_dump?resource=...` section (e.g. static_route_configs)."""
    status, body = admin_get(address, f"/config_dump?resource={resource}", timeout=10.0)
    if status != 200:
        raise RuntimeError(f"envoy admin /config_dump: HTTP {status}: {body[:200]!r}")
    return list(json.loads(body).get("configs", []))
