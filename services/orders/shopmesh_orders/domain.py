"""Orders: placing, reading, listing and moving orders through their lifecycle. No grpc here.

CreateOrder derives the order id from the caller and the request id before
anything else, so a retry after a crash reuses the same reservation and returns
the first order. Stock is reserved (and priced, and the client's prices checked)
by inventory before the order is stored; the order is then stored PENDING with
its OrderCreated in one insert. Every later change is one transition insert with
its event, and of concurrent changes (owner cancel, admin, expiry) exactly one wins.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import weakref
from collections.abc import Sequence
from typing import Protocol

from shopmesh_orders import events, paging, rules
from shopmesh_orders.config import OrdersConfig
from shopmesh_orders.metrics import OrdersMetrics
from shopmesh_orders.records import ItemRequest, NewOrder, Order, OrderPage, OrderStatus, ReservedStock
from shopmesh_orders.store import Decision, OrderStore
from shopmesh_platform.context import Caller
from shopmesh_platform.docstore import AlreadyApplied, OutboxEvent, TransitionConflict, TransitionRefused
from shopmesh_platform.docstore.records import utc_now_ms
from shopmesh_platform.errors import (
    Aborted,
    DomainError,
    FailedPrecondition,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
)

DOMAIN = rules.DOMAIN
# Mesh identities that may read any order without a user token (mesh/mesh.yaml lets only these call GetOrder so).
SERVICE_READERS = frozenset({"payments"})
_OUTCOMES = {
    "INSUFFICIENT_STOCK": "insufficient_stock",
    "PRICE_MISMATCH": "price_mismatch",
    "PRODUCT_UNAVAILABLE": "product_unavailable",
    "INVENTORY_UNAVAILABLE": "inventory_unavailable",
}


class Stock(Protocol):
    async def reserve(self, order_id: str, items: Sequence[ItemRequest]) -> ReservedStock: ...


def _not_found(order_id: str) -> NotFound:
    return NotFound(
        f"order {order_id} not found", reason="ORDER_NOT_FOUND", domain=DOMAIN, metadata={"order_id": order_id}
    )


class Orders:
    """The operations of the orders service."""

    def __init__(self, store: OrderStore, stock: Stock, config: OrdersConfig, metrics: OrdersMetrics) -> None:
        self._store = store
        self._stock = stock
        self._config = config
        self._metrics = metrics
        # One CreateOrder per customer at a time in this replica, so the open-order cap is not raced locally.
        self._creating: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    # Placing an order

    async def create(self, caller: Caller, new: NewOrder) -> Order:
        rules.require_own_user_id(caller.user_id, new.user_id)
        user_id = new.user_id.lower()
        order_id = rules.order_id_for(user_id, new.request_id)
        fingerprint = rules.fingerprint(new.items, new.shipping_address)
        lock = self._creating.setdefault(user_id, asyncio.Lock())
        async with lock:
            existing = await self._store.get(order_id)
            if existing is not None:
                return self._replayed(existing, fingerprint)
            await self._check_open_orders(user_id)
            reserved = await self._reserve(order_id, new.items)
            now = utc_now_ms()
            lines = rules.ordered_lines(new.items, reserved.lines)
            order = Order(
                id=order_id,
                user_id=user_id,
                status=OrderStatus.PENDING,
                lines=lines,
                total_minor=rules.total_minor(lines),
                currency=reserved.currency,
                shipping_address=new.shipping_address,
                created_at=now,
                updated_at=now,
                expires_at=now + dt.timedelta(seconds=self._config.expiry_seconds),
                cancellation_reason="",
                request_fingerprint=fingerprint,
                version=1,
            )
            try:
                stored = await self._store.create(order, events.order_created(order))
            except TransitionConflict:
                # A retry of the same request on another replica stored it first.
                raced = await self._store.get(order_id)
                if raced is None:
                    raise
                return self._replayed(raced, fingerprint)
        self._metrics.entered(OrderStatus.PENDING)
        return stored

    def _replayed(self, existing: Order, fingerprint: str) -> Order:
        if existing.request_fingerprint != fingerprint:
            raise FailedPrecondition(
                "request_id was already used for an order with other items or another address",
                reason="REQUEST_ID_REUSED",
                domain=DOMAIN,
            )
        self._metrics.reservation("replayed")
        return existing

    async def _check_open_orders(self, user_id: str) -> None:
        limit = self._config.max_pending_per_customer
        if await self._store.count_pending(user_id) >= limit:
            raise ResourceExhausted(
                f"you already have {limit} unpaid orders; pay for or cancel one first",
                reason="TOO_MANY_PENDING_ORDERS",
                domain=DOMAIN,
                metadata={"limit": str(limit)},
            )

    async def _reserve(self, order_id: str, items: Sequence[ItemRequest]) -> ReservedStock:
        try:
            reserved = await self._stock.reserve(order_id, items)
        except DomainError as error:
            self._metrics.reservation(_OUTCOMES.get(error.reason, "refused"))
            raise
        if not reserved.held:
            # The reservation of this request id was released (e.g. reaped as an orphan long ago).
            self._metrics.reservation("refused")
            raise FailedPrecondition(
                "the stock reserved for this request_id is no longer held; place the order with a new request_id",
                reason="RESERVATION_NOT_HELD",
                domain=DOMAIN,
            )
        self._metrics.reservation("reserved")
        return reserved

    # Reading

    async def get(self, caller: Caller, order_id: str) -> Order:
        order = await self._store.get(order_id)
        if order is None or not _may_read(caller, order):
            raise _not_found(order_id)
        return order

    async def list(
        self, caller: Caller, *, page_size: int, page_token: str, user_id: str, status: OrderStatus | None
    ) -> OrderPage:
        """The caller's own orders (admins: everyone's, or one user's), newest first."""
        user_id = user_id.lower()
        if not caller.is_admin:
            if caller.user_id is None or user_id not in ("", caller.user_id):
                raise PermissionDenied(
                    "only admins may list other users' orders", reason="NOT_YOUR_ORDERS", domain=DOMAIN
                )
            user_id = caller.user_id
        listing_filter = f"{user_id}|{status.value if status else ''}"
        cursor = paging.decode(page_token, listing_filter)
        size = paging.page_size(page_size)
        after = None
        if cursor is not None:
            after = (dt.datetime.fromtimestamp(cursor.created_ms / 1000, dt.UTC), cursor.order_id)
        found = await self._store.page(user_id=user_id, status=status, after=after, limit=size + 1)
        page = tuple(found[:size])
        token = ""
        if len(found) > size:
            last = page[-1]
            token = paging.encode(paging.Cursor(int(last.created_at.timestamp() * 1000), last.id, listing_filter))
        return OrderPage(orders=page, next_page_token=token)

    # Changing

    async def update_status(self, caller: Caller, order_id: str, target: OrderStatus) -> Order:
        """Admin: only the legal transitions; each emits its event."""
        if not caller.is_admin:
            raise PermissionDenied("only admins may change an order's status", reason="ADMIN_ONLY", domain=DOMAIN)

        def decide(current: Order | None) -> tuple[Order, OutboxEvent]:
            if current is None:
                raise _not_found(order_id)
            rules.check_admin_transition(current.status, target)
            now = utc_now_ms()
            if target is OrderStatus.CANCELLED:
                cancelled = current.moved_to(target, now, cancellation_reason=rules.REASON_ADMIN)
                return cancelled, events.order_cancelled(cancelled, was_paid=current.status is not OrderStatus.PENDING)
            moved = current.moved_to(target, now)
            return moved, events.order_status_changed(moved, current.status)

        order = await self._apply(order_id, decide)
        self._metrics.entered(order.status)
        return order

    async def cancel(self, caller: Caller, order_id: str) -> Order:
        """The owner cancels before shipping; an already cancelled order is returned as it is."""

        def decide(current: Order | None) -> tuple[Order, OutboxEvent] | None:
            if current is None or current.user_id != caller.user_id:
                raise _not_found(order_id)
            rules.check_owner_cancel(current.status)
            if current.status is OrderStatus.CANCELLED:
                return None
            cancelled = current.moved_to(OrderStatus.CANCELLED, utc_now_ms(), cancellation_reason=rules.REASON_OWNER)
            return cancelled, events.order_cancelled(cancelled, was_paid=current.status is not OrderStatus.PENDING)

        try:
            order = await self._apply(order_id, decide)
        except TransitionRefused as refused:
            assert refused.current is not None
            return Order.from_state(refused.current.state, refused.current.version)
        self._metrics.entered(OrderStatus.CANCELLED)
        return order

    # The checkout: what payments reports (each call carries its event's cause; see payment_events)

    async def confirm_paid(self, order_id: str, payment_id: str, *, cause: str) -> Order | None:
        """PENDING -> CONFIRMED (OrderConfirmed); None when the order is no longer PENDING.

        An order cancelled first (expired, or by its owner) stays CANCELLED: payments
        refunds the payment once it learns of the cancellation. `AlreadyApplied` for a
        redelivered cause.
        """

        def decide(current: Order | None) -> tuple[Order, OutboxEvent] | None:
            if current is None or current.status is not OrderStatus.PENDING:
                return None
            confirmed = current.moved_to(OrderStatus.CONFIRMED, utc_now_ms())
            return confirmed, events.order_confirmed(confirmed, payment_id)

        order = await self._settle_checkout(order_id, decide, cause)
        if order is not None:
            self._metrics.entered(OrderStatus.CONFIRMED)
        return order

    async def cancel_unpaid(self, order_id: str, *, cause: str) -> Order | None:
        """PENDING -> CANCELLED (`payment_failed`, OrderCancelled); None when it is no longer PENDING."""

        def decide(current: Order | None) -> tuple[Order, OutboxEvent] | None:
            if current is None or current.status is not OrderStatus.PENDING:
                return None
            cancelled = current.moved_to(
                OrderStatus.CANCELLED, utc_now_ms(), cancellation_reason=rules.REASON_PAYMENT_FAILED
            )
            return cancelled, events.order_cancelled(cancelled, was_paid=False)

        order = await self._settle_checkout(order_id, decide, cause)
        if order is not None:
            self._metrics.entered(OrderStatus.CANCELLED)
        return order

    async def _settle_checkout(self, order_id: str, decide: Decision, cause: str) -> Order | None:
        try:
            return await self._store.transition(order_id, decide, cause=cause)
        except TransitionRefused:
            return None
        except AlreadyApplied:
            # A crash after the insert may have left the cache behind: show the log's state, then report.
            await self._store.refresh_cache(order_id)
            raise

    async def expire(self, order_id: str) -> bool:
        """Cancel an unpaid order past its deadline (`reservation_expired`); False if it is not (any more)."""

        def decide(current: Order | None) -> tuple[Order, OutboxEvent] | None:
            if current is None or not rules.is_expired(current, utc_now_ms()):
                return None
            cancelled = current.moved_to(OrderStatus.CANCELLED, utc_now_ms(), cancellation_reason=rules.REASON_EXPIRED)
            return cancelled, events.order_cancelled(cancelled, was_paid=False)

        try:
            # One expiry per order ever: the cause is unique in the log.
            await self._store.transition(order_id, decide, cause=f"expire:{order_id}")
        except (TransitionRefused, AlreadyApplied, TransitionConflict):
            # Paid, cancelled or expired meanwhile (the cache showed it stale): show the log's state.
            await self._store.refresh_cache(order_id)
            return False
        self._metrics.entered(OrderStatus.CANCELLED)
        self._metrics.expired()
        return True

    async def expire_due(self, limit: int = 100) -> int:
        """Expire every order whose deadline passed (up to `limit`); returns how many this call cancelled."""
        expired = 0
        for order_id in await self._store.due_for_expiry(utc_now_ms(), limit):
            expired += await self.expire(order_id)
        return expired

    async def reshape_cache(self) -> int:
        """Rewrite listing-cache entries a previous version wrote (see `OrderStore.reshape_cache`)."""
        return await self._store.reshape_cache()

    async def _apply(self, order_id: str, decide: Decision) -> Order:
        try:
            return await self._store.transition(order_id, decide)
        except TransitionConflict:
            raise Aborted(
                f"order {order_id} changed concurrently; read it again and retry",
                reason="CONCURRENT_CHANGE",
                domain=DOMAIN,
            ) from None


def _may_read(caller: Caller, order: Order) -> bool:
    if caller.user_id is None:
        return caller.service_identity in SERVICE_READERS
    return caller.is_admin or caller.user_id == order.user_id
