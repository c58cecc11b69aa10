"""Transport security for servers and channels, chosen by one setting (MESH_TLS).

Both factories ask this module how to bind and how to dial, so switching the
whole mesh from plaintext to mutual TLS happens here and nowhere else.
"""

from __future__ import annotations

import grpc
from grpc import aio

from shopmesh_platform.config import PlatformConfig, TransportSecurity


def bind(server: aio.Server, config: PlatformConfig, address: str) -> int:
    """Bind `server` to `address` with the configured security; returns the port."""
    if config.transport is TransportSecurity.OFF:
        port: int = server.add_insecure_port(address)
        return port
    raise NotImplementedError(f"transport {config.transport.value}")  # pragma: no cover


def dial(
    config: PlatformConfig, target: str, options: list[tuple[str, object]], interceptors: list[object]
) -> aio.Channel:
    """Open a channel to `target` with the configured security."""
    if config.transport is TransportSecurity.OFF:
        return aio.insecure_channel(target, options=options, interceptors=interceptors)
    raise NotImplementedError(f"transport {config.transport.value}")  # pragma: no cover


__all__ = ["bind", "dial", "grpc"]
