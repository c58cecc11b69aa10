"""A bare grpc.aio server: the floor the platform is measured against.

It serves grpc.health.v1 Health/Check and UserService.GetMe (a fixed User of the
shape the users service returns) with no interceptors, no database and no
logging, on a plaintext port and on a mutual-TLS port with the stack's `users`
certificate (so clients call it exactly as they call the users service).
Prints `{"plaintext": port, "mtls": port}` on one line once serving; runs until
SIGTERM. Usage: python -m shopmesh_bench.bare_server CERT KEY CA
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import signal
import sys
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import timestamp_pb2
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection

from shopmesh.user.v1 import user_service_pb2 as pb
from shopmesh.user.v1 import user_service_pb2_grpc


def _now() -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(dt.datetime.now(dt.UTC))
    return stamp


# What GetMe returns for a freshly registered user (see shopmesh_users.servicer.to_proto).
FIXED_USER = pb.User(
    id="7f9c24e8-3b12-4c8e-9a41-5d2b6f0e8c13",
    email="bench-user@example.com",
    first_name="Ada",
    last_name="Lovelace",
    created_at=_now(),
    updated_at=_now(),
    last_login=_now(),
    account_status=pb.ACCOUNT_STATUS_ACTIVE,
    role=pb.ROLE_CUSTOMER,
)


class BareUsers(user_service_pb2_grpc.UserServiceServicer):
    async def GetMe(self, request: pb.GetMeRequest, context: Any) -> pb.User:
        return FIXED_USER


async def serve(cert: bytes, key: bytes, ca: bytes) -> None:
    server = aio.server()
    user_service_pb2_grpc.add_UserServiceServicer_to_server(BareUsers(), server)  # type: ignore[no-untyped-call]
    health = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    reflection.enable_server_reflection(
        [
            pb.DESCRIPTOR.services_by_name["UserService"].full_name,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ],
        server,
    )
    plaintext = server.add_insecure_port("127.0.0.1:0")
    credentials = grpc.ssl_server_credentials([(key, cert)], root_certificates=ca, require_client_auth=True)
    mtls = server.add_secure_port("127.0.0.1:0", credentials)
    await server.start()
    await health.set("", health_pb2.HealthCheckResponse.SERVING)
    print(json.dumps({"plaintext": plaintext, "mtls": mtls}), flush=True)
    stopped = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopped.set)
    await stopped.wait()
    await server.stop(1)


if __name__ == "__main__":
    asyncio.run(serve(*(Path(arg).read_bytes() for arg in sys.argv[1:4])))
