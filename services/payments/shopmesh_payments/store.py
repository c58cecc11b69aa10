"""SQL for the payments database (asyncpg). Every function runs on a given connection,
so the domain decides the transaction boundaries.

Status changes are conditional updates (`WHERE status IN (...)`): of two routes
reporting one outcome (API answer, webhook, reconciler) only the first changes
the row, and only it writes the event.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping

import asyncpg

from shopmesh_payments.records import PAID, UNSETTLED, PaymentRecord, PaymentStatus, RefundRecord

ORDER_UNIQUE = "payments_order_unique"
_UNSETTLED = [status.value for status in UNSETTLED]
_PAYMENT_COLUMNS = """id, order_id, user_id, amount_minor, currency, status, payment_method, created_at, updated_at,
    stripe_payment_intent_id, failure_reason, client_secret, request_id, amount_refunded_minor,
    provider_fee_minor, net_amount_minor, processed_at, intent_requested"""
_REFUND_COLUMNS = "id, payment_id, amount_minor, status, idempotency_key, request_id, stripe_refund_id, failure_reason"


class PaymentExists(Exception):
    """The order already has a payment (the unique order id refused the insert)."""


def _payment(row: asyncpg.Record) -> PaymentRecord:
    values = dict(row)
    for key in ("id", "order_id", "user_id", "request_id"):
        if values[key] is not None:
            values[key] = str(values[key])
    values["status"] = PaymentStatus(values["status"])
    return PaymentRecord(**values)


def _refund(row: asyncpg.Record) -> RefundRecord:
    values = dict(row)
    for key in ("id", "payment_id", "request_id"):
        if values[key] is not None:
            values[key] = str(values[key])
    return RefundRecord(**values)


def _uuid(value: str | None) -> uuid.UUID | None:
    return uuid.UUID(value) if value else None


async def insert_payment(
    connection: asyncpg.Connection,
    *,
    payment_id: str,
    order_id: str,
    user_id: str,
    amount_minor: int,
    currency: str,
    payment_method: str,
    request_id: str | None,
    metadata: Mapping[str, str],
    lease_seconds: float,
) -> PaymentRecord:
    """Insert a PENDING payment held by its creator for `lease_seconds`."""
    try:
        row = await connection.fetchrow(
            f"""INSERT INTO payments (id, order_id, user_id, amount_minor, currency, payment_method, request_id,
                                      metadata, lease_until)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now() + make_interval(secs => $9))
                RETURNING {_PAYMENT_COLUMNS}""",
            uuid.UUID(payment_id),
            uuid.UUID(order_id),
            uuid.UUID(user_id),
            amount_minor,
            currency,
            payment_method,
            _uuid(request_id),
            json.dumps(dict(metadata)),
            lease_seconds,
        )
    except asyncpg.UniqueViolationError as exc:
        if exc.constraint_name != ORDER_UNIQUE:
            raise
        raise PaymentExists() from None
    return _payment(row)


async def find_by_id(connection: asyncpg.Connection, payment_id: str, *, lock: bool = False) -> PaymentRecord | None:
    suffix = " FOR UPDATE" if lock else ""
    row = await connection.fetchrow(
        f"SELECT {_PAYMENT_COLUMNS} FROM payments WHERE id = $1{suffix}", uuid.UUID(payment_id)
    )
    return _payment(row) if row else None


async def find_by_order(connection: asyncpg.Connection, order_id: str) -> PaymentRecord | None:
    row = await connection.fetchrow(f"SELECT {_PAYMENT_COLUMNS} FROM payments WHERE order_id = $1", uuid.UUID(order_id))
    return _payment(row) if row else None


async def find_by_intent(connection: asyncpg.Connection, intent_id: str) -> PaymentRecord | None:
    row = await connection.fetchrow(
        f"SELECT {_PAYMENT_COLUMNS} FROM payments WHERE stripe_payment_intent_id = $1", intent_id
    )
    return _payment(row) if row else None


async def record_intent(connection: asyncpg.Connection, payment_id: str, intent_id: str) -> None:
    """Record the PaymentIntent of a payment that has none yet (a recorded id never changes)."""
    await connection.execute(
        "UPDATE payments SET stripe_payment_intent_id = $2 WHERE id = $1 AND stripe_payment_intent_id IS NULL",
        uuid.UUID(payment_id),
        intent_id,
    )


async def set_intent_requested(connection: asyncpg.Connection, payment_id: str, requested: bool) -> None:
    """Record whether a create of the payment's PaymentIntent may have reached Stripe (see migration 0003)."""
    await connection.execute(
        "UPDATE payments SET intent_requested = $2 WHERE id = $1", uuid.UUID(payment_id), requested
    )


async def claim(connection: asyncpg.Connection, payment_id: str, lease_seconds: float) -> PaymentRecord | None:
    """Hold an unsettled payment nobody holds; None if it is settled or held."""
    row = await connection.fetchrow(
        f"""UPDATE payments SET lease_until = now() + make_interval(secs => $2)
            WHERE id = $1 AND status = ANY($3::text[]) AND (lease_until IS NULL OR lease_until < now())
            RETURNING {_PAYMENT_COLUMNS}""",
        uuid.UUID(payment_id),
        lease_seconds,
        _UNSETTLED,
    )
    return _payment(row) if row else None


async def claim_due(connection: asyncpg.Connection, lease_seconds: float, limit: int) -> list[PaymentRecord]:
    """Hold up to `limit` unsettled payments whose hold expired (or that nobody held), oldest change first."""
    rows = await connection.fetch(
        f"""UPDATE payments SET lease_until = now() + make_interval(secs => $1)
            WHERE id IN (SELECT id FROM payments
                         WHERE status = ANY($3::text[]) AND (lease_until IS NULL OR lease_until < now())
                         ORDER BY updated_at LIMIT $2 FOR UPDATE SKIP LOCKED)
            RETURNING {_PAYMENT_COLUMNS}""",
        lease_seconds,
        limit,
        _UNSETTLED,
    )
    return [_payment(row) for row in rows]


async def hold_until_recheck(connection: asyncpg.Connection, payment_id: str, seconds: float) -> None:
    """End the current hold; the reconciler looks at the payment again after `seconds` if it is still unsettled."""
    await connection.execute(
        "UPDATE payments SET lease_until = now() + make_interval(secs => $2) WHERE id = $1",
        uuid.UUID(payment_id),
        seconds,
    )


async def settle(
    connection: asyncpg.Connection,
    payment_id: str,
    status: PaymentStatus,
    *,
    failure_reason: str | None = None,
    fee_minor: int | None = None,
) -> PaymentRecord | None:
    """Move an unsettled payment to SUCCEEDED or FAILED; None if it was settled already."""
    row = await connection.fetchrow(
        f"""UPDATE payments
            SET status = $2, failure_reason = $3, processed_at = now(), lease_until = NULL, client_secret = NULL,
                provider_fee_minor = $4, net_amount_minor = CASE WHEN $4::bigint IS NULL THEN NULL
                                                                 ELSE amount_minor - $4::bigint END
            WHERE id = $1 AND status = ANY($5::text[])
            RETURNING {_PAYMENT_COLUMNS}""",
        uuid.UUID(payment_id),
        status.value,
        failure_reason,
        fee_minor,
        _UNSETTLED,
    )
    return _payment(row) if row else None


async def require_action(connection: asyncpg.Connection, payment_id: str, client_secret: str | None) -> bool:
    """PENDING -> REQUIRES_ACTION (the customer must authenticate); False if it was not PENDING."""
    updated: str = await connection.execute(
        "UPDATE payments SET status = 'REQUIRES_ACTION', client_secret = $2 WHERE id = $1 AND status = 'PENDING'",
        uuid.UUID(payment_id),
        client_secret,
    )
    return updated == "UPDATE 1"


async def count_attempts(connection: asyncpg.Connection, payment_id: str, operation: str, outcome: str) -> int:
    """How many of the payment's Stripe calls of `operation` ended with `outcome`."""
    count = await connection.fetchval(
        "SELECT count(*) FROM payment_attempts WHERE payment_id = $1 AND operation = $2 AND outcome = $3",
        uuid.UUID(payment_id),
        operation,
        outcome,
    )
    return int(count)


async def record_attempt(
    connection: asyncpg.Connection,
    payment_id: str,
    operation: str,
    outcome: str,
    *,
    idempotency_key: str | None = None,
    error_code: str | None = None,
    provider_status: str | None = None,
) -> None:
    await connection.execute(
        """INSERT INTO payment_attempts (payment_id, operation, idempotency_key, outcome, error_code, provider_status)
           VALUES ($1, $2, $3, $4, $5, $6)""",
        uuid.UUID(payment_id),
        operation,
        idempotency_key,
        outcome,
        error_code,
        provider_status,
    )


# Refunds


async def find_refund(connection: asyncpg.Connection, refund_id: str) -> RefundRecord | None:
    row = await connection.fetchrow(f"SELECT {_REFUND_COLUMNS} FROM refunds WHERE id = $1", uuid.UUID(refund_id))
    return _refund(row) if row else None


async def find_refund_by_request(connection: asyncpg.Connection, request_id: str) -> RefundRecord | None:
    row = await connection.fetchrow(
        f"SELECT {_REFUND_COLUMNS} FROM refunds WHERE request_id = $1", uuid.UUID(request_id)
    )
    return _refund(row) if row else None


async def refunds_committed(connection: asyncpg.Connection, payment_id: str) -> int:
    """Minor units refunded or being refunded (succeeded and pending refunds)."""
    total: int = await connection.fetchval(
        """SELECT coalesce(sum(amount_minor), 0) FROM refunds
           WHERE payment_id = $1 AND status IN ('pending', 'succeeded')""",
        uuid.UUID(payment_id),
    )
    return int(total)


async def insert_refund(
    connection: asyncpg.Connection,
    *,
    payment_id: str,
    amount_minor: int,
    reason: str | None,
    request_id: str | None,
    idempotency_key: str,
    lease_seconds: float,
) -> RefundRecord:
    row = await connection.fetchrow(
        f"""INSERT INTO refunds (id, payment_id, amount_minor, reason, request_id, idempotency_key, lease_until)
            VALUES ($1, $2, $3, $4, $5, $6, now() + make_interval(secs => $7))
            RETURNING {_REFUND_COLUMNS}""",
        uuid.uuid4(),
        uuid.UUID(payment_id),
        amount_minor,
        reason,
        _uuid(request_id),
        idempotency_key,
        lease_seconds,
    )
    return _refund(row)


async def insert_settled_refund(
    connection: asyncpg.Connection, *, payment_id: str, amount_minor: int, stripe_refund_id: str | None, key: str
) -> RefundRecord | None:
    """Record a refund learned from Stripe (not made through our API); None if it was known already."""
    row = await connection.fetchrow(
        f"""INSERT INTO refunds (id, payment_id, amount_minor, status, idempotency_key, stripe_refund_id,
                                 reason, processed_at)
            VALUES ($1, $2, $3, 'succeeded', $4, $5, 'reported by stripe', now())
            ON CONFLICT DO NOTHING
            RETURNING {_REFUND_COLUMNS}""",
        uuid.uuid4(),
        uuid.UUID(payment_id),
        amount_minor,
        key,
        stripe_refund_id,
    )
    return _refund(row) if row else None


async def claim_refund(connection: asyncpg.Connection, refund_id: str, lease_seconds: float) -> RefundRecord | None:
    row = await connection.fetchrow(
        f"""UPDATE refunds SET lease_until = now() + make_interval(secs => $2)
            WHERE id = $1 AND status = 'pending' AND (lease_until IS NULL OR lease_until < now())
            RETURNING {_REFUND_COLUMNS}""",
        uuid.UUID(refund_id),
        lease_seconds,
    )
    return _refund(row) if row else None


async def claim_due_refunds(connection: asyncpg.Connection, lease_seconds: float, limit: int) -> list[RefundRecord]:
    rows = await connection.fetch(
        f"""UPDATE refunds SET lease_until = now() + make_interval(secs => $1)
            WHERE id IN (SELECT id FROM refunds
                         WHERE status = 'pending' AND (lease_until IS NULL OR lease_until < now())
                         ORDER BY updated_at LIMIT $2 FOR UPDATE SKIP LOCKED)
            RETURNING {_REFUND_COLUMNS}""",
        lease_seconds,
        limit,
    )
    return [_refund(row) for row in rows]


async def hold_refund_until_recheck(connection: asyncpg.Connection, refund_id: str, seconds: float) -> None:
    await connection.execute(
        "UPDATE refunds SET lease_until = now() + make_interval(secs => $2) WHERE id = $1",
        uuid.UUID(refund_id),
        seconds,
    )


async def settle_refund(
    connection: asyncpg.Connection,
    refund_id: str,
    status: str,
    *,
    stripe_refund_id: str | None = None,
    failure_reason: str | None = None,
) -> RefundRecord | None:
    """pending -> succeeded/failed/cancelled; None if it was not pending."""
    row = await connection.fetchrow(
        f"""UPDATE refunds SET status = $2, stripe_refund_id = coalesce($3, stripe_refund_id), failure_reason = $4,
                               processed_at = now(), lease_until = NULL
            WHERE id = $1 AND status = 'pending'
            RETURNING {_REFUND_COLUMNS}""",
        uuid.UUID(refund_id),
        status,
        stripe_refund_id,
        failure_reason,
    )
    return _refund(row) if row else None


async def apply_refunded_total(connection: asyncpg.Connection, payment_id: str) -> PaymentRecord:
    """Set the payment's refunded amount to its succeeded refunds, and its status to match."""
    row = await connection.fetchrow(
        f"""UPDATE payments p SET amount_refunded_minor = r.total,
                status = CASE WHEN r.total >= p.amount_minor THEN 'REFUNDED'
                              WHEN r.total > 0 THEN 'PARTIALLY_REFUNDED' ELSE p.status END
            FROM (SELECT coalesce(sum(amount_minor), 0) AS total FROM refunds
                  WHERE payment_id = $1 AND status = 'succeeded') r
            WHERE p.id = $1
            RETURNING {", ".join("p." + c.strip() for c in _PAYMENT_COLUMNS.split(","))}""",
        uuid.UUID(payment_id),
    )
    return _payment(row)


# Webhooks


async def mark_event_processed(connection: asyncpg.Connection, event_id: str, event_type: str) -> bool:
    """Record a Stripe event id; False if it had been processed before."""
    inserted = await connection.fetchval(
        """INSERT INTO processed_webhook_events (stripe_event_id, event_type) VALUES ($1, $2)
           ON CONFLICT DO NOTHING RETURNING true""",
        event_id,
        event_type,
    )
    return bool(inserted)


async def record_cancelled_order(
    connection: asyncpg.Connection, order_id: str, refund_request_id: str, reason: str
) -> bool:
    """Remember that the order was cancelled; False when it was known already."""
    inserted = await connection.fetchval(
        """INSERT INTO cancelled_orders (order_id, refund_request_id, reason) VALUES ($1, $2, $3)
           ON CONFLICT (order_id) DO NOTHING RETURNING true""",
        uuid.UUID(order_id),
        uuid.UUID(refund_request_id),
        reason,
    )
    return bool(inserted)


async def paid_cancelled_orders_without_refund(connection: asyncpg.Connection, limit: int) -> list[str]:
    """Orders known cancelled whose payment is paid and has no cancellation refund yet."""
    rows = await connection.fetch(
        """SELECT p.order_id FROM payments p JOIN cancelled_orders c ON c.order_id = p.order_id
           WHERE p.status = ANY($1::text[])
             AND NOT EXISTS (SELECT 1 FROM refunds r WHERE r.request_id = c.refund_request_id)
           ORDER BY c.recorded_at LIMIT $2""",
        [status.value for status in PAID],
        limit,
    )
    return [str(row["order_id"]) for row in rows]
