"""Connect to shopmesh: through the edge with a bearer token, or directly to a service with mTLS.

The messages and stubs are the generated modules (`from shopmesh.user.v1 import
user_service_pb2, user_service_pb2_grpc`); this module only builds channels.

    channel = edge_channel("127.0.0.1:8080", token=token)   # make up: plaintext h2c
    users = user_service_pb2_grpc.UserServiceStub(channel)
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc

__all__ = ["TokenInterceptor", "edge_channel", "mesh_channel"]


class TokenInterceptor(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):  # type: ignore[misc]
    """Adds `authorization: Bearer <token>` to every call (plaintext channels refuse call credentials)."""

    def __init__(self, token: str) -> None:
        self._metadata = ("authorization", f"Bearer {token}")

    def _with_token(self, details: Any) -> Any:
        metadata = [*(details.metadata or ()), self._metadata]
        return details._replace(metadata=metadata)

    def intercept_unary_unary(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        return continuation(self._with_token(details), request)

    def intercept_unary_stream(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        return continuation(self._with_token(details), request)


def _with_token(channel: grpc.Channel, token: str | None) -> grpc.Channel:
    return channel if token is None else grpc.intercept_channel(channel, TokenInterceptor(token))


def edge_channel(
    target: str = "127.0.0.1:8080",
    *,
    token: str | None = None,
    tls: bool = False,
    root_certificates: bytes | None = None,
) -> grpc.Channel:
    """A channel to the edge (Envoy), which serves gRPC and REST on one listener.

    Locally (`make up`) the edge is plaintext h2c on 127.0.0.1; a deployed edge
    terminates TLS (`tls=True`, the system roots unless `root_certificates`).
    `token` (from Login or RegisterUser) is sent on every call.
    """
    if tls:
        channel = grpc.secure_channel(target, grpc.ssl_channel_credentials(root_certificates=root_certificates))
    else:
        channel = grpc.insecure_channel(target)
    return _with_token(channel, token)


def _read(path: Path | str) -> bytes:
    return Path(path).read_bytes()


def mesh_channel(
    target: str,
    service: str,
    *,
    ca: Path | str,
    cert: Path | str,
    key: Path | str,
    token: str | None = None,
) -> grpc.Channel:
    """A channel straight to one service, which speaks mutual TLS only.

    `service` is the name its certificate was issued for (`users`, `orders`, ...);
    `cert`/`key` are your mesh identity's (locally `.stack/pki/developer.pem` and
    `.key`), `ca` the mesh CA (`.stack/pki/ca.pem`). `user` methods still need `token`.
    """
    credentials = grpc.ssl_channel_credentials(
        root_certificates=_read(ca), private_key=_read(key), certificate_chain=_read(cert)
    )
    channel = grpc.secure_channel(target, credentials, options=[("grpc.ssl_target_name_override", service)])
    return _with_token(channel, token)
