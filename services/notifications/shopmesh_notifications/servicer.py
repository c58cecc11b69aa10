"""gRPC servicer of shopmesh.notification.v1.NotificationService: converts between protos and the domain.

Methods not defined here answer UNIMPLEMENTED (the generated base class raises
NotImplementedError, which the platform maps); they are built by later issues.
"""

from __future__ import annotations

from shopmesh.notification.v1 import notification_service_pb2, notification_service_pb2_grpc
from shopmesh_platform.server import ServiceBinding


class NotificationServicer(notification_service_pb2_grpc.NotificationServiceServicer):
    """The notifications service's API."""


def binding(servicer: NotificationServicer) -> ServiceBinding:
    return ServiceBinding(
        descriptor=notification_service_pb2.DESCRIPTOR.services_by_name["NotificationService"],
        servicer=servicer,
        register=notification_service_pb2_grpc.add_NotificationServiceServicer_to_server,
    )
