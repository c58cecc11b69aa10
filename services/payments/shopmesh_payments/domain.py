"""Payments: the payments service's rules. No grpc, no Stripe types here.

A payment is one row per order, inserted before Stripe is called (the unique
order id is what guarantees one PaymentIntent per order). Whoever drives it with
Stripe holds a lease on the row: the CreatePayment call that inserted it, a
retry with the same request id once the lease expired, or the reconciler. The
PaymentIntent is created unconfirmed with the order and user ids in its
metadata, its id recorded, then confirmed; so a crash at any point leaves a
row the reconciler finishes (finding the PaymentIntent by its id; when the id
was never recorded, by creating it again with the same idempotency key, which
Stripe answers with the one it made, or by searching for its metadata).

Three routes report one outcome: the API answer, the webhook and the
reconciler. Each applies it with a conditional update (`settle`) and writes
PaymentSucceeded/PaymentFailed in the same transaction, so the first one wins
and the event is written once.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

import asyncpg
from google.protobuf import timestamp_pb2

from shopmesh.payment.v1 import events_pb2 as events
from shopmesh_payments import store
from shopmesh_payments.config import ReconcileConfig
from shopmesh_payments.metrics import PaymentMetrics
from shopmesh_payments.ports import OrderLookup, PaymentProvider, ProviderDeclined, ProviderUnavailable
from shopmesh_payments.records import (
    PAID,
    IntentState,
    IntentStatus,
    PaymentRecord,
    PaymentStatus,
    ProviderRefund,
    RefundRecord,
)
from shopmesh_platform.context import Caller
from shopmesh_platform.errors import (
    AlreadyExists,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unauthenticated,
    Unavailable,
)
from shopmesh_platform.events.outbox import append_event
from shopmesh_platform.events.topics import PAYMENT_EVENTS

DOMAIN = "payments"
T = TypeVar("T")
logger = logging.getLogger("shopmesh.payments")
# Stripe keeps an idempotency key's answer at least 24 hours; an hour less leaves room for clocks.
IDEMPOTENCY_KEY_KEPT = dt.timedelta(hours=23)
# Failed creates of one payment after which its PaymentIntent is searched for instead of created again.
CREATES_BEFORE_SEARCHING = 3
# A payment's PaymentIntent is created after its row; searching from this much earlier
# leaves room for Stripe's clock to disagree with the database's.
INTENT_SEARCH_MARGIN = dt.timedelta(minutes=10)
# Refunds made because an order was cancelled get a request id derived from the order.
_CANCELLED_ORDER_REFUNDS = uuid.UUID("5f0b6a3e-3c55-4f43-9a51-7d1c2a0e8b61")


def to_timestamp(value: object) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value)  # type: ignore[arg-type]
    return stamp


def intent_key(order_id: str, step: str) -> str:
    """Stripe idempotency key of one step of an order's PaymentIntent (derived from the order)."""
    return f"shopmesh-order-{order_id}-{step}"


def refund_key(request_id: str) -> str:
    return f"shopmesh-refund-{request_id}"


def cancelled_order_refund_request(order_id: str) -> str:
    """The request id of the refund made when a paid order is cancelled: one per order."""
    return str(uuid.uuid5(_CANCELLED_ORDER_REFUNDS, order_id))


def _payment_not_found(payment_id: str) -> NotFound:
    return NotFound(f"payment {payment_id} not found", reason="PAYMENT_NOT_FOUND", domain=DOMAIN)


def _provider_unavailable() -> Unavailable:
    return Unavailable(
        "the payment provider is unavailable; try again later", reason="PAYMENT_PROVIDER_UNAVAILABLE", domain=DOMAIN
    )


@dataclass(frozen=True)
class NewPayment:
    order_id: str
    amount_minor: int
    currency: str
    payment_method: str
    request_id: str | None = None


class Payments:
    """The operations of the payments service (API, webhooks and reconciler share them)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        orders: OrderLookup,
        provider: PaymentProvider,
        settings: ReconcileConfig,
        metrics: PaymentMetrics | None = None,
    ) -> None:
        self._pool = pool
        self._orders = orders
        self._provider = provider
        self._settings = settings
        self._metrics = metrics or PaymentMetrics()

    # CreatePayment

    async def create(self, caller: Caller, new: NewPayment) -> PaymentRecord:
        if caller.user_id is None:
            raise Unauthenticated("paying needs a signed-in user", reason="TOKEN_MISSING", domain=DOMAIN)
        if new.amount_minor <= 0:
            raise InvalidArgument(
                "amount must be greater than 0",
                reason="INVALID_AMOUNT",
                domain=DOMAIN,
                field_violations=[FieldViolation("amount", "must be greater than 0", "AMOUNT_NOT_POSITIVE")],
            )
        async with self._pool.acquire() as connection:
            existing = await store.find_by_order(connection, new.order_id)
        if existing is not None and self._is_retry(existing, caller, new):
            return await self._resume(existing)
        order = await self._orders.get(new.order_id)
        if order is None or order.user_id != caller.user_id:
            raise NotFound(f"order {new.order_id} not found", reason="ORDER_NOT_FOUND", domain=DOMAIN)
        if existing is not None:
            raise self._payment_exists(existing)
        if order.status != "PENDING":
            raise FailedPrecondition(
                f"order {order.id} is {order.status}, not PENDING", reason="ORDER_NOT_PENDING", domain=DOMAIN
            )
        violations = []
        if new.amount_minor != order.total_minor:
            violations.append(FieldViolation("amount", "must equal the order's total amount", "AMOUNT_MISMATCH"))
        if new.currency.upper() != order.currency.upper():
            violations.append(FieldViolation("currency", "must equal the order's currency", "CURRENCY_MISMATCH"))
        if violations:
            raise InvalidArgument(
                "the payment does not match the order: " + ", ".join(v.field for v in violations),
                reason="PAYMENT_ORDER_MISMATCH",
                domain=DOMAIN,
                field_violations=violations,
            )
        try:
            async with self._pool.acquire() as connection:
                payment = await store.insert_payment(
                    connection,
                    payment_id=str(uuid.uuid4()),
                    order_id=order.id,
                    user_id=caller.user_id,
                    amount_minor=new.amount_minor,
                    currency=new.currency.upper(),
                    payment_method=new.payment_method,
                    request_id=new.request_id,
                    metadata={"order_id": order.id, "user_id": caller.user_id},
                    lease_seconds=self._settings.lease_seconds,
                )
        except store.PaymentExists:
            # A concurrent attempt for the same order inserted first.
            async with self._pool.acquire() as connection:
                raced = await store.find_by_order(connection, new.order_id)
            if raced is not None and self._is_retry(raced, caller, new):
                return await self._resume(raced)
            raise self._payment_exists(raced) from None
        self._metrics.count(PaymentStatus.PENDING.value)
        return await self.drive(payment, fresh=True)

    @staticmethod
    def _is_retry(existing: PaymentRecord, caller: Caller, new: NewPayment) -> bool:
        return bool(new.request_id) and existing.user_id == caller.user_id and existing.request_id == new.request_id

    @staticmethod
    def _payment_exists(existing: PaymentRecord | None) -> AlreadyExists:
        return AlreadyExists(
            "this order already has a payment",
            reason="PAYMENT_EXISTS",
            domain=DOMAIN,
            metadata={"payment_id": existing.id} if existing else None,
        )

    async def _resume(self, payment: PaymentRecord) -> PaymentRecord:
        """A retry: finish an interrupted attempt if nobody else is driving it, else answer what is known."""
        if payment.status.settled:
            return payment
        async with self._pool.acquire() as connection:
            claimed = await store.claim(connection, payment.id, self._settings.lease_seconds)
        if claimed is None:
            return payment
        return await self.drive(claimed, fresh=False)

    async def drive(self, payment: PaymentRecord, *, fresh: bool) -> PaymentRecord:
        """Take a held, unsettled payment as far as Stripe allows, then let go of it.

        `fresh`: the row was just inserted by this caller, so no PaymentIntent can exist yet.
        """
        try:
            intent = await self._current_intent(payment, fresh=fresh)
            if intent.status is IntentStatus.REQUIRES_CONFIRMATION:
                key = intent_key(payment.order_id, "confirm")
                intent = await self._attempt(
                    payment, "confirm", key, lambda: self._provider.confirm_intent(intent.id, idempotency_key=key)
                )
        except ProviderDeclined as declined:
            return await self._settle(payment.id, PaymentStatus.FAILED, failure_reason=declined.code)
        except ProviderUnavailable:
            async with self._pool.acquire() as connection:
                await store.hold_until_recheck(connection, payment.id, self._settings.reconcile_after_seconds)
            raise _provider_unavailable() from None
        result = await self.apply_intent(payment.id, intent)
        if not result.status.settled:
            async with self._pool.acquire() as connection:
                await store.hold_until_recheck(connection, payment.id, self._settings.reconcile_after_seconds)
        return result

    async def _current_intent(self, payment: PaymentRecord, *, fresh: bool) -> IntentState:
        """The payment's PaymentIntent: re-read, found by its metadata, or created (and its id recorded)."""
        if payment.stripe_payment_intent_id is not None:
            intent_id = payment.stripe_payment_intent_id
            return await self._attempt(payment, "retrieve", None, lambda: self._provider.retrieve_intent(intent_id))
        found: IntentState | None = None
        # Searching Stripe is needed only if an earlier create may have reached it and Stripe
        # cannot be trusted to answer a repeated create with that one (see `_create_replays`).
        if not fresh and payment.intent_requested and not await self._create_replays(payment):
            since = payment.created_at - INTENT_SEARCH_MARGIN
            found = await self._attempt(
                payment,
                "find",
                None,
                lambda: self._provider.find_intent_for_order(payment.order_id, created_since=since),
            )
        intent = found or await self._create_intent(payment)
        async with self._pool.acquire() as connection:
            await store.record_intent(connection, payment.id, intent.id)
        return intent

    async def _create_replays(self, payment: PaymentRecord) -> bool:
        """Whether a create sent again with the payment's idempotency key gets the PaymentIntent an
        earlier one made, if any: Stripe keeps a key's first answer for at least 24 hours. But it
        also keeps a 5xx it answered, so after a few failed creates the list is searched instead."""
        if dt.datetime.now(dt.UTC) - payment.created_at > IDEMPOTENCY_KEY_KEPT:
            return False
        async with self._pool.acquire() as connection:
            failed = await store.count_attempts(connection, payment.id, "create", "unavailable")
        return failed < CREATES_BEFORE_SEARCHING

    async def _create_intent(self, payment: PaymentRecord) -> IntentState:
        """Create the payment's PaymentIntent with its idempotency key: Stripe has none for it (just
        inserted, never requested, or not found), or answers with the one an earlier create made.

        `intent_requested` is set before a create leaves and cleared again when the
        create certainly did not reach Stripe, so the next driver knows whether it must search.
        """
        if not payment.intent_requested:
            async with self._pool.acquire() as connection:
                await store.set_intent_requested(connection, payment.id, True)
        key = intent_key(payment.order_id, "create")
        try:
            return await self._attempt(
                payment,
                "create",
                key,
                lambda: self._provider.create_intent(
                    amount_minor=payment.amount_minor,
                    currency=payment.currency,
                    payment_method=payment.payment_method,
                    metadata={"order_id": payment.order_id, "user_id": payment.user_id, "payment_id": payment.id},
                    idempotency_key=key,
                ),
            )
        except ProviderUnavailable as unavailable:
            if not unavailable.reached:
                async with self._pool.acquire() as connection:
                    await store.set_intent_requested(connection, payment.id, False)
            raise

    async def _attempt(
        self, payment: PaymentRecord, operation: str, key: str | None, call: Callable[[], Awaitable[T]]
    ) -> T:
        """One Stripe call for a payment, recorded in payment_attempts with its outcome."""
        outcome, code, status = "ok", None, None
        try:
            result = await call()
            if isinstance(result, IntentState):
                status = result.status.value
            return result
        except ProviderDeclined as declined:
            outcome, code = "declined", declined.code
            raise
        except ProviderUnavailable:
            outcome = "unavailable"
            raise
        finally:
            async with self._pool.acquire() as connection:
                await store.record_attempt(
                    connection,
                    payment.id,
                    operation,
                    outcome,
                    idempotency_key=key,
                    error_code=code,
                    provider_status=status,
                )

    # Outcomes, from any route

    async def apply_intent(self, payment_id: str, intent: IntentState) -> PaymentRecord:
        """Apply what Stripe says about the payment's PaymentIntent (once: later reports change nothing)."""
        async with self._pool.acquire() as connection, connection.transaction():
            changed = await self.apply_intent_in(connection, payment_id, intent)
            current = await store.find_by_id(connection, payment_id)
        self.count(changed)
        assert current is not None
        return current

    async def apply_intent_in(
        self, connection: asyncpg.Connection, payment_id: str, intent: IntentState
    ) -> list[PaymentStatus]:
        """`apply_intent` inside the caller's transaction; returns the statuses the payment moved to.

        Stripe's word is taken only about the payment it can be about: an intent for
        another order, amount or currency changes nothing (fail closed; an operator
        looks at the warning), so a confused or forged report never marks an order paid.
        """
        payment = await store.find_by_id(connection, payment_id)
        if payment is None:
            return []
        mismatches = intent_mismatches(payment, intent)
        if mismatches:
            logger.warning(
                "a PaymentIntent that does not match its payment was not applied",
                extra={"payment_id": payment_id, "intent_status": intent.status.value, "mismatch": mismatches},
            )
            return []
        await store.record_intent(connection, payment_id, intent.id)
        if intent.status is IntentStatus.SUCCEEDED:
            return await self._settle_in(connection, payment_id, PaymentStatus.SUCCEEDED, fee_minor=intent.fee_minor)
        if intent.status in (IntentStatus.FAILED, IntentStatus.CANCELED):
            reason = intent.failure_code or intent.status.value
            return await self._settle_in(connection, payment_id, PaymentStatus.FAILED, failure_reason=reason)
        if intent.status is IntentStatus.REQUIRES_ACTION and await store.require_action(
            connection, payment_id, intent.client_secret
        ):
            return [PaymentStatus.REQUIRES_ACTION]
        return []

    async def _settle(
        self, payment_id: str, status: PaymentStatus, *, failure_reason: str | None = None
    ) -> PaymentRecord:
        async with self._pool.acquire() as connection, connection.transaction():
            changed = await self._settle_in(connection, payment_id, status, failure_reason=failure_reason)
            current = await store.find_by_id(connection, payment_id)
        self.count(changed)
        assert current is not None
        return current

    async def _settle_in(
        self,
        connection: asyncpg.Connection,
        payment_id: str,
        status: PaymentStatus,
        *,
        failure_reason: str | None = None,
        fee_minor: int | None = None,
    ) -> list[PaymentStatus]:
        settled = await store.settle(connection, payment_id, status, failure_reason=failure_reason, fee_minor=fee_minor)
        if settled is None:
            return []  # another route decided first
        event: events.PaymentSucceeded | events.PaymentFailed
        if status is PaymentStatus.SUCCEEDED:
            event = events.PaymentSucceeded(
                payment_id=settled.id,
                order_id=settled.order_id,
                user_id=settled.user_id,
                amount_minor=settled.amount_minor,
                currency=settled.currency,
            )
        else:
            event = events.PaymentFailed(
                payment_id=settled.id,
                order_id=settled.order_id,
                user_id=settled.user_id,
                reason=settled.failure_reason or "",
            )
        await append_event(connection, PAYMENT_EVENTS, settled.order_id, event)
        return [status]

    def count(self, statuses: list[PaymentStatus]) -> None:
        for status in statuses:
            self._metrics.count(status.value)

    # GetPayment

    async def get(self, caller: Caller, payment_id: str) -> PaymentRecord:
        """The order's owner or an admin; anyone else learns nothing (NOT_FOUND)."""
        async with self._pool.acquire() as connection:
            payment = await store.find_by_id(connection, payment_id)
        if payment is None or (payment.user_id != caller.user_id and not caller.is_admin):
            raise _payment_not_found(payment_id)
        return payment

    # Refunds

    async def refund(
        self, caller: Caller, payment_id: str, *, amount_minor: int, reason: str, request_id: str
    ) -> PaymentRecord:
        """Admin only: refund `amount_minor` (0: what is left); a retry with `request_id` refunds once."""
        if not caller.is_admin:
            raise PermissionDenied("only an admin may refund payments", reason="ROLE_REQUIRED", domain=DOMAIN)
        return await self._refund(payment_id, amount_minor, reason or None, request_id)

    async def refund_for_cancelled_order(self, order_id: str) -> PaymentRecord | None:
        """Refund what is left of the order's paid payment; idempotent (one refund per order).

        Returns the payment, or None when the order has no paid payment (nothing to do;
        a payment that succeeds later is refunded when that is learned).
        """
        async with self._pool.acquire() as connection:
            payment = await store.find_by_order(connection, order_id)
        if payment is None or payment.status not in PAID:
            return None
        return await self._refund(payment.id, 0, "order cancelled", cancelled_order_refund_request(order_id))

    async def record_cancelled_order(self, connection: asyncpg.Connection, order_id: str, reason: str) -> bool:
        """Remember (in the caller's transaction) that the order was cancelled; False if known already.

        A payment of it that succeeds later is refunded by the reconciler's sweep
        (`refund_paid_cancelled_orders`).
        """
        return await store.record_cancelled_order(
            connection, order_id, cancelled_order_refund_request(order_id), reason
        )

    async def refund_paid_cancelled_orders(self, limit: int = 20) -> int:
        """Refund the paid payments of orders known cancelled that have no cancellation refund yet."""
        async with self._pool.acquire() as connection:
            order_ids = await store.paid_cancelled_orders_without_refund(connection, limit)
        for order_id in order_ids:
            try:
                await self.refund_for_cancelled_order(order_id)
            except Unavailable:
                logger.info("refunding a cancelled order waits for the provider", extra={"order_id": order_id})
            except FailedPrecondition as refused:
                # Declined by the provider: the refund row records it; an admin takes over.
                logger.warning(
                    "refund of a cancelled order refused", extra={"order_id": order_id, "reason": refused.reason}
                )
        return len(order_ids)

    async def _refund(self, payment_id: str, amount_minor: int, reason: str | None, request_id: str) -> PaymentRecord:
        claimed: RefundRecord | None
        async with self._pool.acquire() as connection, connection.transaction():
            payment = await store.find_by_id(connection, payment_id, lock=True)
            if payment is None:
                raise _payment_not_found(payment_id)
            existing = await store.find_refund_by_request(connection, request_id)
            if existing is not None and existing.payment_id != payment_id:
                raise FailedPrecondition(
                    "request_id was used for another payment's refund", reason="REQUEST_ID_REUSED", domain=DOMAIN
                )
            if existing is None:
                if payment.status not in PAID or payment.stripe_payment_intent_id is None:
                    raise FailedPrecondition(
                        f"a {payment.status.value} payment cannot be refunded",
                        reason="PAYMENT_NOT_REFUNDABLE",
                        domain=DOMAIN,
                    )
                left = payment.amount_minor - await store.refunds_committed(connection, payment_id)
                amount = amount_minor or left
                if left <= 0 or amount > left:
                    raise FailedPrecondition(
                        "the amount is more than is left to refund",
                        reason="REFUND_EXCEEDS_PAYMENT",
                        domain=DOMAIN,
                        field_violations=[FieldViolation("amount", f"at most {left} minor units are left", "")],
                    )
                claimed = await store.insert_refund(
                    connection,
                    payment_id=payment_id,
                    amount_minor=amount,
                    reason=reason,
                    request_id=request_id,
                    idempotency_key=refund_key(request_id),
                    lease_seconds=self._settings.lease_seconds,
                )
            else:
                claimed = await store.claim_refund(connection, existing.id, self._settings.lease_seconds)
        if claimed is not None:
            declined = await self.drive_refund(payment, claimed, fresh=existing is None)
            if declined is not None and existing is None:
                raise FailedPrecondition(
                    "the payment provider refused the refund",
                    reason="REFUND_DECLINED",
                    domain=DOMAIN,
                    metadata={"code": declined},
                )
        async with self._pool.acquire() as connection:
            current = await store.find_by_id(connection, payment_id)
        assert current is not None
        return current

    async def drive_refund(self, payment: PaymentRecord, refund: RefundRecord, *, fresh: bool) -> str | None:
        """Create (or find) the held refund at Stripe and apply it; returns Stripe's code if it was refused.

        `fresh`: the refund row was just inserted, so Stripe cannot have it yet.
        """
        intent_id = payment.stripe_payment_intent_id
        assert intent_id is not None
        try:
            found = None if fresh else await self._provider.find_refund(intent_id, refund.id)
            result = found or await self._provider.create_refund(
                intent_id=intent_id,
                amount_minor=refund.amount_minor,
                metadata={"refund_id": refund.id, "payment_id": payment.id, "order_id": payment.order_id},
                idempotency_key=refund.idempotency_key,
            )
        except ProviderDeclined as declined:
            async with self._pool.acquire() as connection:
                await store.settle_refund(connection, refund.id, "failed", failure_reason=declined.code)
            return declined.code
        except ProviderUnavailable:
            async with self._pool.acquire() as connection:
                await store.hold_refund_until_recheck(connection, refund.id, self._settings.reconcile_after_seconds)
            raise _provider_unavailable() from None
        async with self._pool.acquire() as connection, connection.transaction():
            await self.apply_refund_in(connection, payment.id, refund.id, result)
        if result.status == "pending":
            async with self._pool.acquire() as connection:
                await store.hold_refund_until_recheck(connection, refund.id, self._settings.reconcile_after_seconds)
        return None

    async def apply_refund_in(
        self, connection: asyncpg.Connection, payment_id: str, refund_id: str, result: ProviderRefund
    ) -> None:
        """Apply Stripe's word on one of our refunds (once: PaymentRefunded only if it was still pending)."""
        if result.status == "succeeded":
            settled = await store.settle_refund(connection, refund_id, "succeeded", stripe_refund_id=result.id)
            if settled is not None:
                await self._refunded_in(connection, payment_id, settled.amount_minor)
        elif result.status in ("failed", "canceled"):
            status = "failed" if result.status == "failed" else "cancelled"
            await store.settle_refund(
                connection, refund_id, status, stripe_refund_id=result.id, failure_reason=result.status
            )

    async def _refunded_in(self, connection: asyncpg.Connection, payment_id: str, amount_minor: int) -> None:
        payment = await store.apply_refunded_total(connection, payment_id)
        await append_event(
            connection,
            PAYMENT_EVENTS,
            payment.order_id,
            events.PaymentRefunded(
                payment_id=payment.id,
                order_id=payment.order_id,
                user_id=payment.user_id,
                amount_minor=amount_minor,
                currency=payment.currency,
            ),
        )
        self._metrics.count(payment.status.value)

    async def apply_charge_refunds_in(
        self,
        connection: asyncpg.Connection,
        payment: PaymentRecord,
        refunds: list[ProviderRefund] | None,
        amount_refunded_minor: int,
    ) -> None:
        """Apply a charge's refunds as Stripe reports them (charge.refunded), each once.

        Our own refunds are recognised by the refund id in their metadata; others
        (made in Stripe's dashboard) are recorded. Without the list, the amount
        refunded beyond what we know is recorded as one refund.
        """
        if payment.status.settled is False:
            # A refunded charge had succeeded: the success is learned first.
            await self._settle_in(connection, payment.id, PaymentStatus.SUCCEEDED)
        if refunds is None:
            known = await store.refunds_committed(connection, payment.id)
            if amount_refunded_minor > known:
                recorded = await store.insert_settled_refund(
                    connection,
                    payment_id=payment.id,
                    amount_minor=amount_refunded_minor - known,
                    stripe_refund_id=None,
                    key=f"stripe-charge-{payment.id}-{amount_refunded_minor}",
                )
                if recorded is not None:
                    await self._refunded_in(connection, payment.id, recorded.amount_minor)
            return
        for refund in refunds:
            ours = refund.metadata.get("refund_id")
            if ours and _is_uuid(ours) and (mine := await store.find_refund(connection, ours)) is not None:
                if mine.payment_id == payment.id:
                    await self.apply_refund_in(connection, payment.id, mine.id, refund)
                continue
            if refund.status == "succeeded" and refund.amount_minor > 0:
                recorded = await store.insert_settled_refund(
                    connection,
                    payment_id=payment.id,
                    amount_minor=refund.amount_minor,
                    stripe_refund_id=refund.id,
                    key=f"stripe-{refund.id}",
                )
                if recorded is not None:
                    await self._refunded_in(connection, payment.id, recorded.amount_minor)

    # The reconciler's pass

    async def reconcile_once(self, limit: int = 20) -> int:
        """Re-read from Stripe the unsettled payments and pending refunds nobody holds, and refund
        the paid payments of cancelled orders; returns how many were handled."""
        async with self._pool.acquire() as connection:
            payments = await store.claim_due(connection, self._settings.lease_seconds, limit)
            refunds = await store.claim_due_refunds(connection, self._settings.lease_seconds, limit)
        for payment in payments:
            try:
                await self.drive(payment, fresh=False)
            except Unavailable:
                logger.info("reconciling a payment waits for the provider", extra={"payment_id": payment.id})
        for refund in refunds:
            async with self._pool.acquire() as connection:
                owner = await store.find_by_id(connection, refund.payment_id)
            assert owner is not None
            try:
                await self.drive_refund(owner, refund, fresh=False)
            except Unavailable:
                logger.info("reconciling a refund waits for the provider", extra={"refund_id": refund.id})
        late = await self.refund_paid_cancelled_orders(limit)
        return len(payments) + len(refunds) + late


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def intent_mismatches(payment: PaymentRecord, intent: IntentState) -> list[str]:
    """What of a PaymentIntent Stripe reported differs from the payment it is applied to (nothing: it is its own)."""
    mismatches = []
    if intent.amount_minor != payment.amount_minor:
        mismatches.append("amount")
    if intent.currency.upper() != payment.currency.upper():
        mismatches.append("currency")
    order_id = intent.metadata.get("order_id")
    if order_id is not None and order_id != payment.order_id:
        mismatches.append("order_id")
    return mismatches


def metadata_order_id(metadata: Mapping[str, str]) -> str | None:
    """The order id a PaymentIntent's metadata names, if it is one of ours."""
    order_id = metadata.get("order_id")
    return order_id if order_id and _is_uuid(order_id) else None
