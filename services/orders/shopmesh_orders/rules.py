"""The pure rules of orders: ids, request fingerprints, the lifecycle, expiry. No I/O, no grpc.

Lifecycle (DESIGN §5): PENDING -> CONFIRMED (the checkout, on payment) -> SHIPPED
-> DELIVERED; PENDING or CONFIRMED -> CANCELLED (owner, admin, expiry, failed payment).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
from collections.abc import Sequence

from shopmesh_orders.records import Address, ItemRequest, Order, OrderLine, OrderStatus
from shopmesh_platform.errors import FailedPrecondition, FieldViolation, PermissionDenied

DOMAIN = "orders"
# Fixed forever: order ids derived from (user, request id) must not change across releases.
ORDER_ID_NAMESPACE = uuid.UUID("6f1c2a4e-8d3b-5c7a-9e21-4b0d8f6a3c15")

REASON_EXPIRED = "reservation_expired"
REASON_OWNER = "cancelled_by_owner"
REASON_ADMIN = "cancelled_by_admin"
REASON_PAYMENT_FAILED = "payment_failed"

# What an admin may do with UpdateOrderStatus; PENDING -> CONFIRMED belongs to the checkout.
ADMIN_TRANSITIONS: frozenset[tuple[OrderStatus, OrderStatus]] = frozenset(
    {
        (OrderStatus.CONFIRMED, OrderStatus.SHIPPED),
        (OrderStatus.SHIPPED, OrderStatus.DELIVERED),
        (OrderStatus.PENDING, OrderStatus.CANCELLED),
        (OrderStatus.CONFIRMED, OrderStatus.CANCELLED),
    }
)
# Before shipping: what the owner may cancel.
CANCELLABLE = frozenset({OrderStatus.PENDING, OrderStatus.CONFIRMED})


def order_id_for(user_id: str, request_id: str) -> str:
    """The order's id: derived from the caller and the request id (AIP-155), so a retry finds
    the same order and reuses the same reservation; a fresh UUID when there is no request id."""
    if not request_id:
        return str(uuid.uuid4())
    return str(uuid.uuid5(ORDER_ID_NAMESPACE, f"{user_id}:{request_id.lower()}"))


def fingerprint(items: Sequence[ItemRequest], address: Address) -> str:
    """A digest of what was asked for, to tell a retry from another order under the same request id."""
    canonical = json.dumps(
        {
            "items": [[item.product_id, item.quantity, repr(float(item.price))] for item in items],
            "address": address.to_document(),
        },
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def require_own_user_id(caller_user_id: str | None, requested: str) -> None:
    """CreateOrder's `user_id` must be the caller's own."""
    if caller_user_id is None or caller_user_id != requested.lower():
        raise PermissionDenied(
            "user_id must be your own user id",
            reason="NOT_YOUR_USER_ID",
            domain=DOMAIN,
            field_violations=[FieldViolation("user_id", "must be the caller's own user id", "user_id.caller")],
        )


def ordered_lines(items: Sequence[ItemRequest], reserved: Sequence[OrderLine]) -> tuple[OrderLine, ...]:
    """The reserved (catalog-priced) lines in the order the client listed its items."""
    by_product = {line.product_id: line for line in reserved}
    return tuple(by_product[item.product_id] for item in items)


def total_minor(lines: Sequence[OrderLine]) -> int:
    """Exact: integer minor units times integer quantities."""
    return sum(line.total_minor for line in lines)


def check_admin_transition(current: OrderStatus, target: OrderStatus) -> None:
    if (current, target) not in ADMIN_TRANSITIONS:
        raise FailedPrecondition(
            f"an order cannot go from {current.value} to {target.value}",
            reason="ILLEGAL_TRANSITION",
            domain=DOMAIN,
            metadata={"from": current.value, "to": target.value},
        )


def check_owner_cancel(current: OrderStatus) -> None:
    if current not in CANCELLABLE and current is not OrderStatus.CANCELLED:
        raise FailedPrecondition(
            f"an order that is {current.value} cannot be cancelled any more",
            reason="ILLEGAL_TRANSITION",
            domain=DOMAIN,
            metadata={"from": current.value, "to": OrderStatus.CANCELLED.value},
        )


def is_expired(order: Order, now: dt.datetime) -> bool:
    """An unpaid order past its deadline."""
    return order.status is OrderStatus.PENDING and order.expires_at <= now
