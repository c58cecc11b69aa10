"""Catalog, stock and reservations: the inventory service's rules and transactions. No grpc here.

Every stock change updates the product row and appends its ledger row in one
transaction, with its event (StockReserved, StockReleased, StockCommitted,
StockReturned on `inventory-events`, keyed by order id) through the outbox.
Inventory never releases an order's stock on its own clock: `cancel` (on
OrderCancelled) and `commit` (on OrderConfirmed) are called by the order-events
consumer; the one exception is `reap_orphan`, for a reservation whose order
inventory never saw (`mark_order_seen`, on OrderCreated) within a grace period and
which orders, asked then, does not have.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

import asyncpg

from shopmesh.inventory.v1 import events_pb2 as events
from shopmesh_inventory import paging, rules, store
from shopmesh_inventory.metrics import InventoryMetrics, ReservationOutcome
from shopmesh_inventory.records import (
    LedgerKind,
    LineRequest,
    NewProduct,
    ProductPage,
    ProductRecord,
    Reservation,
    ReservationState,
    StockAdjustment,
)
from shopmesh_platform.errors import AlreadyExists, DomainError, FailedPrecondition, NotFound
from shopmesh_platform.events.outbox import append_event
from shopmesh_platform.events.topics import INVENTORY_EVENTS

TOPIC = INVENTORY_EVENTS
DOMAIN = rules.DOMAIN
ORPHAN_REASON = "orphaned: the order was never stored"
_OUTCOME_BY_REASON = {
    "INSUFFICIENT_STOCK": ReservationOutcome.INSUFFICIENT_STOCK,
    "PRODUCT_UNAVAILABLE": ReservationOutcome.PRODUCT_UNAVAILABLE,
    "MIXED_CURRENCIES": ReservationOutcome.MIXED_CURRENCIES,
    "RESERVATION_MISMATCH": ReservationOutcome.CONFLICTING_RETRY,
    "PRICE_MISMATCH": ReservationOutcome.PRICE_MISMATCH,
}


# Whether orders has the order: True, False, or None when it cannot tell right now.
OrderExists = Callable[[str], Awaitable[bool | None]]


class OrphanVerdict(enum.Enum):
    RELEASED = "released"  # orders has no such order: the reservation was an orphan
    ORDER_EXISTS = "order_exists"  # a real order whose OrderCreated is late: marked seen
    UNDECIDED = "undecided"  # orders could not tell: nothing released


@dataclass(frozen=True)
class ReapOutcome:
    order_id: str
    verdict: OrphanVerdict


class Settlement(enum.Enum):
    """What a release, commit, return or cancel did; each is idempotent by order id."""

    APPLIED = "applied"  # the stock moved now
    ALREADY_DONE = "already_done"  # an earlier call (or a redelivered event) moved it
    NOT_APPLICABLE = "not_applicable"  # the reservation's state does not allow it (e.g. commit after release)
    NO_RESERVATION = "no_reservation"  # no reservation for this order


def _product_not_found(product_id: str) -> NotFound:
    return NotFound(
        f"product {product_id} not found",
        reason="PRODUCT_NOT_FOUND",
        domain=DOMAIN,
        metadata={"product_id": product_id},
    )


class Inventory:
    """The operations of the inventory service."""

    def __init__(self, pool: asyncpg.Pool, metrics: InventoryMetrics) -> None:
        self._pool = pool
        self._metrics = metrics

    # The catalog

    async def list_products(self, *, page_size: int, page_token: str, category: str) -> ProductPage:
        """One page of the public catalog (active products), by id."""
        cursor = paging.decode(page_token, category)
        size = paging.page_size(page_size)
        async with self._pool.acquire() as connection:
            found = await store.list_active_products(
                connection, after=cursor.after if cursor else "", category=category, limit=size + 1
            )
        page = tuple(found[:size])
        more = len(found) > size
        token = paging.encode(paging.Cursor(after=page[-1].id, category=category)) if more else ""
        return ProductPage(products=page, next_page_token=token)

    async def get_product(self, product_id: str) -> ProductRecord:
        """A product of the public catalog; inactive ones are as unknown as missing ones."""
        async with self._pool.acquire() as connection:
            product = await store.find_product(connection, product_id)
        if product is None or not product.active:
            raise _product_not_found(product_id)
        return product

    async def create_product(self, new: NewProduct) -> ProductRecord:
        """Add a product with its initial stock; a retry with the same content returns it."""
        async with self._pool.acquire() as connection, connection.transaction():
            created = await store.insert_product(connection, new)
            if created is None:
                existing = await store.find_product(connection, new.id)
                if existing is None or not new.matches(existing):
                    raise AlreadyExists(
                        f"another product already has the id {new.id}",
                        reason="PRODUCT_EXISTS",
                        domain=DOMAIN,
                        metadata={"product_id": new.id},
                    )
                return existing
            if new.initial_stock > 0:
                # The row was inserted with on_hand = initial stock; its ledger row says so.
                await connection.execute(
                    """INSERT INTO stock_ledger (product_id, kind, on_hand_delta, reserved_delta, reason)
                       VALUES ($1, 'adjust', $2, 0, 'initial stock')""",
                    new.id,
                    new.initial_stock,
                )
        return created

    async def adjust_stock(self, adjustment: StockAdjustment) -> ProductRecord:
        """Add or remove stock with a reason; idempotent by request id; never below what is reserved."""
        async with self._pool.acquire() as connection, connection.transaction():
            # The product lock first: it also serializes retries of one request id.
            locked = await store.lock_products(connection, [adjustment.product_id])
            product = locked.get(adjustment.product_id)
            if product is None:
                raise _product_not_found(adjustment.product_id)
            earlier = await store.find_adjustment(connection, adjustment.request_id)
            if earlier is not None:
                if earlier != (adjustment.product_id, adjustment.delta):
                    raise FailedPrecondition(
                        "request_id was already used for another stock adjustment",
                        reason="REQUEST_ID_REUSED",
                        domain=DOMAIN,
                    )
                return product
            rules.check_adjustment(product, adjustment.delta)
            return await store.move_stock(
                connection,
                product.id,
                LedgerKind.ADJUST,
                on_hand_delta=adjustment.delta,
                reserved_delta=0,
                reason=adjustment.reason,
                request_id=adjustment.request_id,
            )

    # Reservations

    async def reserve(self, order_id: str, lines: Sequence[LineRequest]) -> Reservation:
        """Hold stock for every line or none; idempotent by order id (see InventoryService.ReserveStock)."""
        try:
            reservation, outcome = await self._reserve(order_id, lines)
        except DomainError as error:
            refused = _OUTCOME_BY_REASON.get(error.reason)
            if refused is not None:
                self._metrics.reservation(refused)
            raise
        self._metrics.reservation(outcome)
        return reservation

    async def _reserve(self, order_id: str, lines: Sequence[LineRequest]) -> tuple[Reservation, ReservationOutcome]:
        async with self._pool.acquire() as connection, connection.transaction():
            # Two calls for one order wait for each other: the second sees the first's reservation.
            await store.lock_order(connection, order_id)
            existing = await store.find_reservation(connection, order_id)
            if existing is not None:
                if not rules.same_lines(existing, lines):
                    raise FailedPrecondition(
                        f"order {order_id} already has a reservation with other lines",
                        reason="RESERVATION_MISMATCH",
                        domain=DOMAIN,
                        metadata={"order_id": order_id},
                    )
                return existing, ReservationOutcome.REPLAYED
            # Rows locked in id order: concurrent reservations neither oversell nor deadlock.
            products = await store.lock_products(connection, [line.product_id for line in lines])
            currency, priced = rules.price_lines(lines, products)
            total = rules.total_minor(priced)
            await store.insert_reservation(connection, order_id, currency, total, priced)
            for line in priced:
                await store.move_stock(
                    connection,
                    line.product_id,
                    LedgerKind.RESERVE,
                    on_hand_delta=0,
                    reserved_delta=line.quantity,
                    order_id=order_id,
                )
            await append_event(connection, TOPIC, order_id, events.StockReserved(order_id=order_id))
            reservation = await store.find_reservation(connection, order_id)
        assert reservation is not None
        return reservation, ReservationOutcome.RESERVED

    async def get_reservation(self, order_id: str) -> Reservation:
        async with self._pool.acquire() as connection:
            reservation = await store.find_reservation(connection, order_id)
        if reservation is None:
            raise NotFound(
                f"no reservation for order {order_id}",
                reason="RESERVATION_NOT_FOUND",
                domain=DOMAIN,
                metadata={"order_id": order_id},
            )
        return reservation

    # Settlements, driven by order events (and the orphan reaper)

    async def release(self, order_id: str, reason: str) -> Settlement:
        """Give an ACTIVE reservation's stock back (the order was cancelled before payment)."""
        async with self._pool.acquire() as connection, connection.transaction():
            return await self._settle(connection, order_id, LedgerKind.RELEASE, reason)

    async def commit(self, order_id: str, *, connection: asyncpg.Connection | None = None) -> Settlement:
        """Take an ACTIVE reservation's units off the shelf (the order was paid: OrderConfirmed).

        `connection`: run inside the caller's transaction (the consumer's inbox), else in one of its own.
        """
        async with self._transaction(connection) as transaction:
            return await self._settle(transaction, order_id, LedgerKind.COMMIT, "")

    async def return_committed(self, order_id: str, reason: str) -> Settlement:
        """Put a COMMITTED reservation's units back on hand (a paid order was cancelled)."""
        async with self._pool.acquire() as connection, connection.transaction():
            return await self._settle(connection, order_id, LedgerKind.RETURN, reason)

    async def cancel(self, order_id: str, reason: str, *, connection: asyncpg.Connection | None = None) -> Settlement:
        """OrderCancelled: release an active reservation, return a committed one; else nothing."""
        async with self._transaction(connection) as transaction:
            reservation = await store.find_reservation(transaction, order_id, for_update=True)
            if reservation is None:
                return Settlement.NO_RESERVATION
            paid = reservation.state in (ReservationState.COMMITTED, ReservationState.RETURNED)
            kind = LedgerKind.RETURN if paid else LedgerKind.RELEASE
            return await self._settle(transaction, order_id, kind, reason)

    async def mark_order_seen(
        self, order_id: str, *, connection: asyncpg.Connection | None = None
    ) -> ReservationState | None:
        """OrderCreated: the order exists, so its reservation is no orphan. Returns the reservation's state.

        The reservation row is locked first, so the reaper either released it
        before (the caller sees RELEASED) or skips it from now on.
        """
        async with self._transaction(connection) as transaction:
            reservation = await store.find_reservation(transaction, order_id, for_update=True)
            await store.mark_order_seen(transaction, order_id)
        return reservation.state if reservation else None

    async def reap_orphan(self, grace_seconds: float, order_exists: OrderExists) -> ReapOutcome | None:
        """Look at the oldest orphan candidate, if any: release it if orders has no such order.

        A candidate is an active reservation older than the grace period whose
        OrderCreated was never seen. Orders, the source of truth, is asked before
        anything is released: its OrderCreated may be unpublished still (orders down
        longer than the grace), so "not seen" alone never proves an orphan. An order
        that exists is marked seen (its own events settle it); when orders cannot
        tell, nothing is released and the reaper stops for this round (`UNDECIDED`).
        One replica at a time (a transaction-scoped advisory lock), one reservation
        per transaction, so its product rows are locked in id order.
        """
        async with self._pool.acquire() as connection, connection.transaction():
            if not await store.try_lock_reaper(connection):
                return None
            order_id = await store.lock_next_orphan(connection, grace_seconds)
            if order_id is None:
                return None
            exists = await order_exists(order_id)
            if exists is None:
                return ReapOutcome(order_id, OrphanVerdict.UNDECIDED)
            if exists:
                await store.mark_order_seen(connection, order_id)
                return ReapOutcome(order_id, OrphanVerdict.ORDER_EXISTS)
            await self._settle(connection, order_id, LedgerKind.RELEASE, ORPHAN_REASON, locked=True)
        self._metrics.settlement("reaped")
        return ReapOutcome(order_id, OrphanVerdict.RELEASED)

    @asynccontextmanager
    async def _transaction(self, connection: asyncpg.Connection | None) -> AsyncIterator[asyncpg.Connection]:
        """A transaction on `connection` (a savepoint inside the caller's), or on a connection of the pool."""
        if connection is not None:
            async with connection.transaction():
                yield connection
            return
        async with self._pool.acquire() as acquired, acquired.transaction():
            yield acquired

    async def _settle(
        self, connection: asyncpg.Connection, order_id: str, kind: LedgerKind, reason: str, *, locked: bool = False
    ) -> Settlement:
        """Move one reservation's stock as `kind` says, once, with ledger rows and its event."""
        reservation = await store.find_reservation(connection, order_id, for_update=not locked)
        if reservation is None:
            return Settlement.NO_RESERVATION
        source, target = _TRANSITIONS[kind]
        if reservation.state is target:
            return Settlement.ALREADY_DONE
        if reservation.state is not source:
            return Settlement.NOT_APPLICABLE
        # Lines come in product id order: product rows are locked in that order.
        for line in reservation.lines:
            on_hand_delta, reserved_delta = _deltas(kind, line.quantity)
            await store.move_stock(
                connection,
                line.product_id,
                kind,
                on_hand_delta=on_hand_delta,
                reserved_delta=reserved_delta,
                order_id=order_id,
                reason=reason,
            )
        await store.set_reservation_state(connection, order_id, target, reason)
        await append_event(connection, TOPIC, order_id, _event(kind, order_id, reason))
        self._metrics.settlement(kind.value)
        return Settlement.APPLIED


_TRANSITIONS = {
    LedgerKind.RELEASE: (ReservationState.ACTIVE, ReservationState.RELEASED),
    LedgerKind.COMMIT: (ReservationState.ACTIVE, ReservationState.COMMITTED),
    LedgerKind.RETURN: (ReservationState.COMMITTED, ReservationState.RETURNED),
}


def _deltas(kind: LedgerKind, quantity: int) -> tuple[int, int]:
    """(on_hand delta, reserved delta) of a settlement of `quantity` units (migrations/inventory/0001)."""
    if kind is LedgerKind.RELEASE:
        return 0, -quantity
    if kind is LedgerKind.COMMIT:
        return -quantity, -quantity
    if kind is LedgerKind.RETURN:
        return quantity, 0
    raise ValueError(f"{kind} is not a settlement")


def _event(
    kind: LedgerKind, order_id: str, reason: str
) -> events.StockReleased | events.StockCommitted | events.StockReturned:
    if kind is LedgerKind.COMMIT:
        return events.StockCommitted(order_id=order_id)
    if kind is LedgerKind.RETURN:
        return events.StockReturned(order_id=order_id, reason=reason)
    return events.StockReleased(order_id=order_id, reason=reason)
