"""Domain records of the inventory service (no grpc, no SQL)."""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass


class ReservationState(enum.Enum):
    """Mirrors the contract's ReservationState; the values are what the database stores."""

    ACTIVE = "active"
    COMMITTED = "committed"
    RELEASED = "released"
    EXPIRED = "expired"
    RETURNED = "returned"


class LedgerKind(enum.Enum):
    """How a stock ledger row moves a product's counters (see migrations/inventory/0001)."""

    ADJUST = "adjust"
    RESERVE = "reserve"
    RELEASE = "release"
    COMMIT = "commit"
    RETURN = "return"


@dataclass(frozen=True)
class ProductRecord:
    """A catalog product with its stock; prices in integer minor units."""

    id: str
    name: str
    description: str
    price_minor: int
    currency: str
    category: str
    image_url: str
    active: bool
    initial_stock: int
    on_hand: int
    reserved: int
    created_at: dt.datetime
    updated_at: dt.datetime

    @property
    def available(self) -> int:
        return self.on_hand - self.reserved


@dataclass(frozen=True)
class NewProduct:
    """What CreateProduct asks for; a retry must ask for exactly the same."""

    id: str
    name: str
    description: str
    price_minor: int
    currency: str
    category: str
    image_url: str
    active: bool
    initial_stock: int

    def matches(self, existing: ProductRecord) -> bool:
        """Whether `existing` is this product as created (stock changed since does not count)."""
        return (
            existing.name,
            existing.description,
            existing.price_minor,
            existing.currency,
            existing.category,
            existing.image_url,
            existing.active,
            existing.initial_stock,
        ) == (
            self.name,
            self.description,
            self.price_minor,
            self.currency,
            self.category,
            self.image_url,
            self.active,
            self.initial_stock,
        )


@dataclass(frozen=True)
class StockAdjustment:
    """AdjustStock's request: a signed delta, why, and its idempotency key."""

    product_id: str
    delta: int
    reason: str
    request_id: str


@dataclass(frozen=True)
class LineRequest:
    """One line of a ReserveStock request; `expected_price` (major units) is what the caller's client was shown."""

    product_id: str
    quantity: int
    expected_price: float | None = None


@dataclass(frozen=True)
class ReservedLine:
    """One priced line of a reservation (the catalog's name and price when reserved)."""

    product_id: str
    name: str
    quantity: int
    unit_price_minor: int


@dataclass(frozen=True)
class Reservation:
    """Stock held for one order."""

    order_id: str
    state: ReservationState
    currency: str
    total_minor: int
    lines: tuple[ReservedLine, ...]
    reason: str = ""
    expires_at: dt.datetime | None = None


@dataclass(frozen=True)
class ProductPage:
    products: tuple[ProductRecord, ...]
    next_page_token: str


@dataclass(frozen=True)
class LedgerMismatch:
    """A product whose row disagrees with its ledger or with its active reservations."""

    product_id: str
    on_hand: int
    reserved: int
    ledger_on_hand: int
    ledger_reserved: int
    reserved_by_active_reservations: int
