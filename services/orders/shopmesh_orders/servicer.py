"""gRPC servicer of shopmesh.order.v1.OrderService: converts between protos and the domain.

Methods not defined here answer UNIMPLEMENTED (the generated base class raises
NotImplementedError, which the platform maps); they are built by later issues.
"""

from __future__ import annotations

from shopmesh.order.v1 import order_service_pb2, order_service_pb2_grpc
from shopmesh_platform.server import ServiceBinding


class OrderServicer(order_service_pb2_grpc.OrderServiceServicer):
    """The orders service's API."""


def binding(servicer: OrderServicer) -> ServiceBinding:
    return ServiceBinding.of(servicer, order_service_pb2, order_service_pb2_grpc, "OrderService")
