"""gRPC servicer of shopmesh.user.v1.UserService: converts between protos and the domain.

Methods not defined here answer UNIMPLEMENTED (the generated base class raises
NotImplementedError, which the platform maps); they are built by later issues.
"""

from __future__ import annotations

from shopmesh.user.v1 import user_service_pb2, user_service_pb2_grpc
from shopmesh_platform.server import ServiceBinding


class UserServicer(user_service_pb2_grpc.UserServiceServicer):
    """The users service's API."""


def binding(servicer: UserServicer) -> ServiceBinding:
    return ServiceBinding(
        descriptor=user_service_pb2.DESCRIPTOR.services_by_name["UserService"],
        servicer=servicer,
        register=user_service_pb2_grpc.add_UserServiceServicer_to_server,
    )
