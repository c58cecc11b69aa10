"""Where a sign-in came from: the client address recorded with its session.

Headers are the client's to write, so an address is only taken from a header
when the hop that set it is one we run: the edge (mesh identity `edge`, proven by
its certificate). Envoy there runs with `use_remote_address` and overwrites
`x-envoy-external-address` with the TCP peer it saw, on every request (see
envoy/shopmesh_edge/render.py). X-Forwarded-For is never read: its leftmost
element is whatever the client sent. Any other caller, and an edge request
without one well-formed address, is recorded at its own gRPC peer address.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from urllib.parse import unquote

EDGE_IDENTITY = "edge"
EXTERNAL_ADDRESS_HEADER = "x-envoy-external-address"
# Longer than any textual IPv6 address with a zone: refused before parsing.
MAX_ADDRESS_LENGTH = 64


def _ip(text: str) -> str | None:
    """`text` as a normalised IP address, or None if it is not exactly one."""
    if len(text) > MAX_ADDRESS_LENGTH:
        return None
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def peer_address(peer: str) -> str | None:
    """The IP of a gRPC peer string (`ipv4:1.2.3.4:5`, `ipv6:[::1]:5`, URL-encoded or not)."""
    scheme, _, rest = peer.partition(":")
    if scheme not in ("ipv4", "ipv6") or len(rest) > 3 * MAX_ADDRESS_LENGTH:
        return None
    host = unquote(rest).rpartition(":")[0]
    return _ip(host.removeprefix("[").removesuffix("]"))


def client_address(metadata: Iterable[tuple[str, str | bytes]], peer: str, identity: str | None) -> str | None:
    """The address to record for a call from mesh identity `identity` at gRPC `peer`."""
    if identity == EDGE_IDENTITY:
        vouched = [value for key, value in metadata if key == EXTERNAL_ADDRESS_HEADER]
        if len(vouched) == 1 and isinstance(vouched[0], str):
            address = _ip(vouched[0])
            if address is not None:
                return address
    return peer_address(peer)
