"""Reserving stock with inventory's ReserveStock, over mutual TLS as the `orders` identity.

Inventory prices every line from its catalog and checks the client's price
under the same row locks as the stock (`expected_price`), so a refused order
leaves nothing reserved. Its refusals are translated into this service's terms:
a violation of `lines[i].x` names `items[i].x` (the lines are sent in the
client's order), and an unreachable inventory is UNAVAILABLE (retry with the
same request id: the reservation is idempotent by order id).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import grpc
from google.rpc import error_details_pb2, status_pb2
from grpc import aio

from shopmesh.inventory.v1 import inventory_service_pb2 as inventory_pb
from shopmesh.inventory.v1 import inventory_service_pb2_grpc
from shopmesh_orders.records import ItemRequest, OrderLine, ReservedStock
from shopmesh_orders.rules import DOMAIN
from shopmesh_platform.errors import DomainError, FailedPrecondition, FieldViolation, InvalidArgument, Unavailable

logger = logging.getLogger("shopmesh.orders.stock")
STATUS_DETAILS_KEY = "grpc-status-details-bin"
# Inventory's line fields and the CreateOrder item fields they are.
_ITEM_FIELDS = {"product_id": "product_id", "quantity": "quantity", "expected_price": "price"}


class InventoryStock:
    """`reserve(order_id, items)` through an inventory channel."""

    def __init__(self, channel: aio.Channel) -> None:
        self._stub = inventory_service_pb2_grpc.InventoryServiceStub(channel)

    async def reserve(self, order_id: str, items: Sequence[ItemRequest]) -> ReservedStock:
        request = inventory_pb.ReserveStockRequest(
            order_id=order_id,
            lines=[
                inventory_pb.ReservationLineInput(
                    product_id=item.product_id, quantity=item.quantity, expected_price=item.price
                )
                for item in items
            ],
        )
        try:
            reply = await self._stub.ReserveStock(request)
        except aio.AioRpcError as error:
            raise refusal(error) from None
        reservation = reply.reservation
        return ReservedStock(
            lines=tuple(
                OrderLine(
                    product_id=line.product_id,
                    name=line.name,
                    quantity=line.quantity,
                    unit_price_minor=line.unit_price_minor,
                )
                for line in reservation.lines
            ),
            total_minor=reservation.total_minor,
            currency=reservation.currency,
            held=reservation.state == inventory_pb.RESERVATION_STATE_ACTIVE,
        )


def _rich_status(error: aio.AioRpcError) -> status_pb2.Status | None:
    for key, value in error.trailing_metadata() or ():
        if key == STATUS_DETAILS_KEY and isinstance(value, bytes):
            return status_pb2.Status.FromString(value)
    return None


def _details(status: status_pb2.Status | None) -> tuple[str, dict[str, str], list[FieldViolation]]:
    """(reason, metadata, field violations renamed to CreateOrder's items) of inventory's status."""
    reason, metadata, violations = "", {}, []
    for detail in status.details if status is not None else ():
        info = error_details_pb2.ErrorInfo()
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(info):
            reason, metadata = info.reason, dict(info.metadata)
        elif detail.Unpack(bad):
            violations = [FieldViolation(_item_field(v.field), v.description, v.reason) for v in bad.field_violations]
    return reason, metadata, violations


def _item_field(field: str) -> str:
    """`lines[2].expected_price` -> `items[2].price`; other fields keep their names."""
    head, _, leaf = field.partition(".")
    if head.startswith("lines[") and leaf in _ITEM_FIELDS:
        return f"items{head.removeprefix('lines')}.{_ITEM_FIELDS[leaf]}"
    return "items" if field == "lines" else field


def refusal(error: aio.AioRpcError) -> DomainError:
    """Inventory's answer as this service's error (the cause stays in the logs, not in the answer)."""
    code = error.code()
    reason, metadata, violations = _details(_rich_status(error))
    if code == grpc.StatusCode.INVALID_ARGUMENT and violations:
        message = "; ".join(f"{v.field}: {v.description}" for v in violations)
        return InvalidArgument(
            message, reason=reason or "INVALID_ITEMS", domain=DOMAIN, metadata=metadata, field_violations=violations
        )
    if code == grpc.StatusCode.FAILED_PRECONDITION and reason == "RESERVATION_MISMATCH":
        return FailedPrecondition(
            "request_id was already used for an order with other items",
            reason="REQUEST_ID_REUSED",
            domain=DOMAIN,
        )
    if code == grpc.StatusCode.FAILED_PRECONDITION:
        return FailedPrecondition(
            error.details() or "the stock does not allow this order",
            reason=reason or None,
            domain=DOMAIN,
            metadata=metadata,
        )
    logger.warning("inventory did not reserve", extra={"grpc_code": code.name if code else "UNKNOWN"})
    return Unavailable(
        "inventory could not be reached; retry with the same request_id",
        reason="INVENTORY_UNAVAILABLE",
        domain=DOMAIN,
    )
