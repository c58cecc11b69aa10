"""The orders service's records (frozen dataclasses) and their document shape in the transition log.

An order's state, as stored in each transition (`state` of `<order id>:<version>`):

    {id, user_id, status: "PENDING", items: [{product_id, name, quantity, unit_price_minor}],
     total_minor, currency, shipping_address: {street, city, state, zip_code, country},
     created_at, updated_at, expires_at, cancellation_reason, request_fingerprint}

Statuses are the contract's enum names without their prefix (ORDER_STATUS_PENDING -> "PENDING").
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any


class OrderStatus(enum.Enum):
    """Mirrors shopmesh.order.v1.OrderStatus."""

    PENDING = "PENDING"
    CONFIRMED = "CONFIRMED"
    SHIPPED = "SHIPPED"
    DELIVERED = "DELIVERED"
    CANCELLED = "CANCELLED"


@dataclass(frozen=True)
class Address:
    street: str
    city: str
    state: str
    zip_code: str
    country: str

    def to_document(self) -> dict[str, str]:
        return {
            "street": self.street,
            "city": self.city,
            "state": self.state,
            "zip_code": self.zip_code,
            "country": self.country,
        }

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> Address:
        return cls(**{key: str(document[key]) for key in ("street", "city", "state", "zip_code", "country")})


@dataclass(frozen=True)
class ItemRequest:
    """One line as the client sent it; `price` (major units) is what the client was shown."""

    product_id: str
    quantity: int
    price: float


@dataclass(frozen=True)
class NewOrder:
    """A CreateOrder request, validated by the contract."""

    user_id: str
    items: tuple[ItemRequest, ...]
    shipping_address: Address
    request_id: str


@dataclass(frozen=True)
class OrderLine:
    """A line priced from the catalog."""

    product_id: str
    name: str
    quantity: int
    unit_price_minor: int

    @property
    def total_minor(self) -> int:
        return self.unit_price_minor * self.quantity


@dataclass(frozen=True)
class ReservedStock:
    """What inventory reserved for an order: priced lines and whether the stock is still held."""

    lines: tuple[OrderLine, ...]
    total_minor: int
    currency: str
    held: bool


@dataclass(frozen=True)
class Order:
    """One order at one version."""

    id: str
    user_id: str
    status: OrderStatus
    lines: tuple[OrderLine, ...]
    total_minor: int
    currency: str
    shipping_address: Address
    created_at: dt.datetime
    updated_at: dt.datetime
    expires_at: dt.datetime
    cancellation_reason: str
    request_fingerprint: str
    version: int = 0

    def moved_to(self, status: OrderStatus, at: dt.datetime, *, cancellation_reason: str = "") -> Order:
        return replace(
            self,
            status=status,
            updated_at=at,
            cancellation_reason=cancellation_reason or self.cancellation_reason,
            version=self.version + 1,
        )

    def to_state(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "user_id": self.user_id,
            "status": self.status.value,
            "items": [
                {
                    "product_id": line.product_id,
                    "name": line.name,
                    "quantity": line.quantity,
                    "unit_price_minor": line.unit_price_minor,
                }
                for line in self.lines
            ],
            "total_minor": self.total_minor,
            "currency": self.currency,
            "shipping_address": self.shipping_address.to_document(),
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "expires_at": self.expires_at,
            "cancellation_reason": self.cancellation_reason,
            "request_fingerprint": self.request_fingerprint,
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any], version: int) -> Order:
        return cls(
            id=state["id"],
            user_id=state["user_id"],
            status=OrderStatus(state["status"]),
            lines=tuple(
                OrderLine(
                    product_id=item["product_id"],
                    name=item["name"],
                    quantity=int(item["quantity"]),
                    unit_price_minor=int(item["unit_price_minor"]),
                )
                for item in state["items"]
            ),
            total_minor=int(state["total_minor"]),
            currency=state["currency"],
            shipping_address=Address.from_document(state["shipping_address"]),
            created_at=state["created_at"],
            updated_at=state["updated_at"],
            expires_at=state["expires_at"],
            cancellation_reason=state.get("cancellation_reason", ""),
            request_fingerprint=state.get("request_fingerprint", ""),
            version=version,
        )


@dataclass(frozen=True)
class OrderPage:
    orders: tuple[Order, ...]
    next_page_token: str
