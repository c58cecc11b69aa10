"""gRPC servicer of shopmesh.payment.v1.PaymentService: converts between protos and the domain."""

from __future__ import annotations

from typing import Any

from shopmesh.payment.v1 import payment_service_pb2 as pb
from shopmesh.payment.v1 import payment_service_pb2_grpc
from shopmesh_payments.domain import NewPayment, Payments, to_timestamp
from shopmesh_payments.orders_client import minor_units
from shopmesh_payments.records import PaymentRecord, PaymentStatus
from shopmesh_payments.webhooks import StripeWebhooks
from shopmesh_platform.context import current_caller
from shopmesh_platform.server import ServiceBinding

SIGNATURE_HEADER = "stripe-signature"
# Enum names: protobuf takes them in constructors.
STATUSES = {status: f"PAYMENT_STATUS_{status.value}" for status in PaymentStatus}


def major_units(minor: int) -> float:
    return minor / 100


def to_proto(payment: PaymentRecord) -> pb.Payment:
    return pb.Payment(
        id=payment.id,
        order_id=payment.order_id,
        user_id=payment.user_id,
        amount=major_units(payment.amount_minor),
        currency=payment.currency,
        status=STATUSES[payment.status],
        amount_refunded=major_units(payment.amount_refunded_minor),
        failure_reason=payment.failure_reason or "",
        created_at=to_timestamp(payment.created_at),
        updated_at=to_timestamp(payment.updated_at),
    )


def to_create_response(payment: PaymentRecord) -> pb.CreatePaymentResponse:
    if payment.status is PaymentStatus.REQUIRES_ACTION:
        return pb.CreatePaymentResponse(
            payment_id=payment.id,
            status=STATUSES[payment.status],
            amount=major_units(payment.amount_minor),
            client_secret=payment.client_secret or "",
            requires_action=True,
        )
    return pb.CreatePaymentResponse(
        payment_id=payment.id,
        status=STATUSES[payment.status],
        amount=major_units(payment.amount_minor),
        failure_reason=payment.failure_reason or "",
    )


def _header(context: Any, name: str) -> str | None:
    for item in context.invocation_metadata() or ():
        if item.key == name:
            return str(item.value)
    return None


class PaymentServicer(payment_service_pb2_grpc.PaymentServiceServicer):
    """The payments service's API."""

    def __init__(self, payments: Payments, webhooks: StripeWebhooks) -> None:
        self._payments = payments
        self._webhooks = webhooks

    async def CreatePayment(self, request: pb.CreatePaymentRequest, context: Any) -> pb.CreatePaymentResponse:
        payment = await self._payments.create(
            current_caller(),
            NewPayment(
                order_id=request.order_id,
                amount_minor=minor_units(request.amount),
                currency=request.currency,
                payment_method=request.payment_method_id,
                request_id=request.request_id or None,
            ),
        )
        return to_create_response(payment)

    async def GetPayment(self, request: pb.GetPaymentRequest, context: Any) -> pb.Payment:
        return to_proto(await self._payments.get(current_caller(), request.id))

    async def RefundPayment(self, request: pb.RefundPaymentRequest, context: Any) -> pb.Payment:
        payment = await self._payments.refund(
            current_caller(),
            request.id,
            amount_minor=minor_units(request.amount),
            reason=request.reason,
            request_id=request.request_id,
        )
        return to_proto(payment)

    async def HandleStripeWebhook(
        self, request: pb.HandleStripeWebhookRequest, context: Any
    ) -> pb.HandleStripeWebhookResponse:
        duplicate = await self._webhooks.handle(request.body.data, _header(context, SIGNATURE_HEADER))
        return pb.HandleStripeWebhookResponse(duplicate=duplicate)


def binding(servicer: PaymentServicer) -> ServiceBinding:
    return ServiceBinding.of(servicer, pb, payment_service_pb2_grpc, "PaymentService")
