"""gRPC servicer of shopmesh.payment.v1.PaymentService: converts between protos and the domain.

Methods not defined here answer UNIMPLEMENTED (the generated base class raises
NotImplementedError, which the platform maps); they are built by later issues.
"""

from __future__ import annotations

from shopmesh.payment.v1 import payment_service_pb2, payment_service_pb2_grpc
from shopmesh_platform.server import ServiceBinding


class PaymentServicer(payment_service_pb2_grpc.PaymentServiceServicer):
    """The payments service's API."""


def binding(servicer: PaymentServicer) -> ServiceBinding:
    return ServiceBinding.of(servicer, payment_service_pb2, payment_service_pb2_grpc, "PaymentService")
