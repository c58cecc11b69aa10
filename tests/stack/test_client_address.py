"""The users service records the address the edge vouches for, or the gRPC peer, never a client's header."""

from __future__ import annotations

import pytest

from shopmesh_users.client import client_address, peer_address


@pytest.mark.parametrize(
    ("peer", "address"),
    [
        ("ipv4:127.0.0.1:50123", "127.0.0.1"),
        ("ipv6:[::1]:50123", "::1"),
        ("ipv6:%5B2001:db8::7%5D:443", "2001:db8::7"),
        ("unix:/run/users.sock", None),
        ("ipv4:not-an-address:1", None),
        ("ipv4:" + "1" * 500 + ":1", None),
        ("", None),
    ],
)
def test_peer_strings_give_their_ip(peer: str, address: str | None) -> None:
    assert peer_address(peer) == address


PEER = "ipv4:10.0.0.8:40000"


@pytest.mark.parametrize(
    ("identity", "metadata", "recorded"),
    [
        ("edge", [("x-envoy-external-address", "198.51.100.4")], "198.51.100.4"),
        ("edge", [("x-envoy-external-address", "2001:DB8:0::1")], "2001:db8::1"),
        # Not exactly one well-formed address: the edge's own peer address instead.
        ("edge", [("x-envoy-external-address", "198.51.100.4, 203.0.113.9")], "10.0.0.8"),
        ("edge", [("x-envoy-external-address", "1" * 5000)], "10.0.0.8"),
        ("edge", [("x-envoy-external-address", "a"), ("x-envoy-external-address", "198.51.100.4")], "10.0.0.8"),
        ("edge", [("x-envoy-external-address", b"\x7f\x00\x00\x01")], "10.0.0.8"),
        ("edge", [], "10.0.0.8"),
        # X-Forwarded-For is the client's to write: never read, from anyone.
        ("edge", [("x-forwarded-for", "203.0.113.9")], "10.0.0.8"),
        ("developer", [("x-forwarded-for", "203.0.113.9"), ("x-envoy-external-address", "203.0.113.7")], "10.0.0.8"),
        (None, [("x-envoy-external-address", "203.0.113.7")], "10.0.0.8"),
    ],
)
def test_only_the_edge_vouches_for_an_address(
    identity: str | None, metadata: list[tuple[str, str | bytes]], recorded: str
) -> None:
    assert client_address(metadata, PEER, identity) == recorded
