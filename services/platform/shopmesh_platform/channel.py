"""`create_channel`: how one service calls another.

Every call gets a deadline: the method's `timeout` from the mesh declaration
(or the client default) through the gRPC service config, which gRPC applies
when the caller sets none. Only methods declared `idempotent` get a retry
policy (on UNAVAILABLE, and CANCELLED: what a server shutting down answers a
call it had not yet handed to the service, e.g. while its process is being
replaced; with exponential backoff), so a retry can never duplicate a side
effect. Calls that never left the channel, or that a server refused
(REFUSED_STREAM, GOAWAY), gRPC retries transparently for every method. With a `Tracing` that
exports, every call gets a client span and sends its context as `traceparent`.
"""

from __future__ import annotations

import json
from typing import Any

from grpc import aio

from shopmesh_platform import transport
from shopmesh_platform.config import PlatformConfig
from shopmesh_platform.mesh import ServiceDecl
from shopmesh_platform.traces import Tracing

RETRY_POLICY = {
    "maxAttempts": 4,
    "initialBackoff": "0.1s",
    "maxBackoff": "1s",
    "backoffMultiplier": 2,
    "retryableStatusCodes": ["UNAVAILABLE", "CANCELLED"],
}


def _seconds(value: float) -> str:
    return f"{value:.3f}s"


def service_config(service: ServiceDecl, default_timeout: float) -> dict[str, Any]:
    """The gRPC service config for calls to `service`."""
    method_configs: list[dict[str, Any]] = [
        {"name": [{"service": service.full_name}], "timeout": _seconds(default_timeout)}
    ]
    for method in service.methods.values():
        config: dict[str, Any] = {
            "name": [{"service": service.full_name, "method": method.name}],
            "timeout": _seconds(method.timeout_seconds),
        }
        if method.idempotent:
            config["retryPolicy"] = RETRY_POLICY
        method_configs.append(config)
    return {"methodConfig": method_configs}


def create_channel(
    config: PlatformConfig, target: str, *, address: str | None = None, tracing: Tracing | None = None
) -> aio.Channel:
    """A channel from this service to the mesh service named `target`.

    `address` overrides the configured address (SHOPMESH_ADDRESS_<NAME> or the
    declared port on 127.0.0.1); `tracing` traces its calls (the Runtime passes the process's).
    """
    service = config.mesh.service(target)
    options: list[tuple[str, object]] = [
        ("grpc.service_config", json.dumps(service_config(service, config.client_deadline_seconds))),
        ("grpc.enable_retries", 1),
        ("grpc.max_receive_message_length", config.limits.max_message_bytes),
        ("grpc.max_send_message_length", config.limits.max_message_bytes),
        ("grpc.keepalive_time_ms", config.limits.keepalive_time_ms),
    ]
    interceptors = tracing.client_interceptors() if tracing is not None else []
    return transport.dial(config, target, address or config.address_of(target), options, interceptors)
