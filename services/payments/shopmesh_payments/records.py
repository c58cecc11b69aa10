"""Domain records of the payments service (no grpc, no SQL, no Stripe types)."""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


class PaymentStatus(enum.Enum):
    """The contract's PaymentStatus (without its prefix); the database stores these names."""

    PENDING = "PENDING"
    REQUIRES_ACTION = "REQUIRES_ACTION"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    REFUNDED = "REFUNDED"
    PARTIALLY_REFUNDED = "PARTIALLY_REFUNDED"

    @property
    def settled(self) -> bool:
        """Whether the payment's outcome is decided (succeeded or failed, refunded or not)."""
        return self not in UNSETTLED


UNSETTLED = frozenset({PaymentStatus.PENDING, PaymentStatus.REQUIRES_ACTION})
# A succeeded payment stays "paid" through partial refunds.
PAID = frozenset({PaymentStatus.SUCCEEDED, PaymentStatus.PARTIALLY_REFUNDED})


@dataclass(frozen=True)
class PaymentRecord:
    """One payment (one per order)."""

    id: str
    order_id: str
    user_id: str
    amount_minor: int
    currency: str
    status: PaymentStatus
    payment_method: str
    created_at: dt.datetime
    updated_at: dt.datetime
    stripe_payment_intent_id: str | None = None
    failure_reason: str | None = None
    client_secret: str | None = None
    request_id: str | None = None
    amount_refunded_minor: int = 0
    provider_fee_minor: int | None = None
    net_amount_minor: int | None = None
    processed_at: dt.datetime | None = None
    # Whether a create of its PaymentIntent may have reached Stripe (False: certainly none exists).
    intent_requested: bool = True


@dataclass(frozen=True)
class RefundRecord:
    id: str
    payment_id: str
    amount_minor: int
    status: str
    idempotency_key: str
    request_id: str | None = None
    stripe_refund_id: str | None = None
    failure_reason: str | None = None


@dataclass(frozen=True)
class OrderSnapshot:
    """What payments needs to know about an order (from the orders service)."""

    id: str
    user_id: str
    status: str  # PENDING, CONFIRMED, SHIPPED, DELIVERED, CANCELLED
    total_minor: int
    currency: str


class IntentStatus(enum.Enum):
    """Where a PaymentIntent is, as far as this service cares."""

    REQUIRES_CONFIRMATION = "requires_confirmation"
    REQUIRES_ACTION = "requires_action"
    PROCESSING = "processing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # declined: Stripe says requires_payment_method with a last error
    CANCELED = "canceled"
    OTHER = "other"


@dataclass(frozen=True)
class IntentState:
    """A PaymentIntent as Stripe reported it."""

    id: str
    status: IntentStatus
    amount_minor: int
    currency: str
    metadata: Mapping[str, str] = field(default_factory=dict)
    client_secret: str | None = None
    failure_code: str | None = None
    fee_minor: int | None = None


@dataclass(frozen=True)
class ProviderRefund:
    """A refund as Stripe reported it."""

    id: str
    amount_minor: int
    status: str  # succeeded, pending, failed, canceled
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class WebhookEvent:
    """A verified Stripe event: its id, type and the object it carries (parsed JSON)."""

    id: str
    type: str
    data_object: Mapping[str, Any]
