"""Synchronous gRPC channels into a stack instance, for its probes, tools and tests.

They present a mesh identity's certificate (by default `developer`) and verify
that the server is the service they meant to reach; plaintext when the
instance runs with MESH_TLS=off.
"""

from __future__ import annotations

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from shopmesh_stack.settings import StackSettings


def channel(
    settings: StackSettings, service: str, *, identity: str = "developer", port: int | None = None
) -> grpc.Channel:
    address = f"127.0.0.1:{port or settings.ports.grpc(service)}"
    files = settings.tls_files(identity)
    if files is None:
        return grpc.insecure_channel(address)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=files.ca.read_bytes(),
        private_key=files.key.read_bytes(),
        certificate_chain=files.cert.read_bytes(),
    )
    return grpc.secure_channel(address, credentials, options=[("grpc.ssl_target_name_override", service)])


def health_status(settings: StackSettings, service: str, grpc_service: str = "", timeout: float = 2.0) -> int | None:
    """grpc.health.v1 status of a mesh service, or None if unreachable."""
    with channel(settings, service) as chan:
        try:
            reply = health_pb2_grpc.HealthStub(chan).Check(
                health_pb2.HealthCheckRequest(service=grpc_service), timeout=timeout
            )
        except grpc.RpcError:
            return None
        return int(reply.status)


def grpcurl_tls_flags(settings: StackSettings, service: str, identity: str = "developer") -> list[str]:
    """grpcurl's flags to call `service` directly as `identity`."""
    files = settings.tls_files(identity)
    if files is None:
        return ["-plaintext"]
    return ["-cacert", str(files.ca), "-cert", str(files.cert), "-key", str(files.key), "-servername", service]
