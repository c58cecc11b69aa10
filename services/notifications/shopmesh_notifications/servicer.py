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
    return ServiceBinding.of(servicer, notification_service_pb2, notification_service_pb2_grpc, "NotificationService")
