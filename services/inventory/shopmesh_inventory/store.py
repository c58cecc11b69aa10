"""SQL for the inventory database (asyncpg). Every function runs on a given connection,
so the domain decides the transaction boundaries and the locking order.

Locking order, which keeps concurrent stock changes free of deadlocks: an
order's advisory lock (reserve) or its reservation row (release, commit,
return, the reaper), then product rows in ascending id order.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import asyncpg

from shopmesh_inventory.records import (
    LedgerKind,
    LedgerMismatch,
    NewProduct,
    ProductRecord,
    Reservation,
    ReservationState,
    ReservedLine,
)

_PRODUCT_COLUMNS = """id, name, description, price_minor, currency, category, image_url, active,
    initial_stock, on_hand, reserved, created_at, updated_at"""
# Advisory lock key spaces (two int4 keys; the outbox relay uses the one-bigint space).
_ORDER_LOCK_CLASS = 0x1A7E
_REAPER_LOCK_CLASS = 0x1A7F


def _product(row: asyncpg.Record) -> ProductRecord:
    return ProductRecord(**dict(row))


async def insert_product(connection: asyncpg.Connection, product: NewProduct) -> ProductRecord | None:
    """Insert `product`; None if its id is taken (the row is left as it is)."""
    row = await connection.fetchrow(
        f"""INSERT INTO products (id, name, description, price_minor, currency, category, image_url, active,
                                  initial_stock, on_hand)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::integer, $9::integer)
            ON CONFLICT (id) DO NOTHING
            RETURNING {_PRODUCT_COLUMNS}""",
        product.id,
        product.name,
        product.description,
        product.price_minor,
        product.currency,
        product.category,
        product.image_url,
        product.active,
        product.initial_stock,
    )
    return _product(row) if row else None


async def find_product(connection: asyncpg.Connection, product_id: str) -> ProductRecord | None:
    row = await connection.fetchrow(f"SELECT {_PRODUCT_COLUMNS} FROM products WHERE id = $1", product_id)
    return _product(row) if row else None


async def list_active_products(
    connection: asyncpg.Connection, *, after: str, category: str, limit: int
) -> list[ProductRecord]:
    """Active products with id > `after` (and of `category` when given), by id."""
    rows = await connection.fetch(
        f"""SELECT {_PRODUCT_COLUMNS} FROM products
            WHERE active AND id > $1 AND ($2 = '' OR category = $2)
            ORDER BY id LIMIT $3""",
        after,
        category,
        limit,
    )
    return [_product(row) for row in rows]


async def lock_products(connection: asyncpg.Connection, product_ids: Sequence[str]) -> dict[str, ProductRecord]:
    """Lock the existing products of `product_ids` in ascending id order; returns them by id."""
    rows = await connection.fetch(
        f"SELECT {_PRODUCT_COLUMNS} FROM products WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE",
        sorted(set(product_ids)),
    )
    return {row["id"]: _product(row) for row in rows}


async def move_stock(
    connection: asyncpg.Connection,
    product_id: str,
    kind: LedgerKind,
    *,
    on_hand_delta: int,
    reserved_delta: int,
    order_id: str | None = None,
    reason: str = "",
    request_id: str | None = None,
) -> ProductRecord:
    """Change a product's counters and append the ledger row that says so, together.

    The update is conditional on the result staying valid (the table's checks
    would refuse it anyway): a caller that did not lock the row first gets an
    error (INTERNAL: a bug) rather than a silent oversell.
    """
    row = await connection.fetchrow(
        f"""UPDATE products SET on_hand = on_hand + $2, reserved = reserved + $3
            WHERE id = $1 AND reserved + $3 >= 0 AND on_hand + $2 >= reserved + $3
            RETURNING {_PRODUCT_COLUMNS}""",
        product_id,
        on_hand_delta,
        reserved_delta,
    )
    if row is None:
        raise RuntimeError(f"stock change of {product_id} would break its invariants")
    await connection.execute(
        """INSERT INTO stock_ledger (product_id, kind, on_hand_delta, reserved_delta, order_id, reason, request_id)
           VALUES ($1, $2, $3, $4, $5, $6, $7)""",
        product_id,
        kind.value,
        on_hand_delta,
        reserved_delta,
        uuid.UUID(order_id) if order_id else None,
        reason,
        uuid.UUID(request_id) if request_id else None,
    )
    return _product(row)


async def find_adjustment(connection: asyncpg.Connection, request_id: str) -> tuple[str, int] | None:
    """(product id, delta) of the adjustment made with `request_id`, if any."""
    row = await connection.fetchrow(
        "SELECT product_id, on_hand_delta FROM stock_ledger WHERE request_id = $1", uuid.UUID(request_id)
    )
    return (row["product_id"], int(row["on_hand_delta"])) if row else None


async def lock_order(connection: asyncpg.Connection, order_id: str) -> None:
    """Serialize reservations of one order id until the transaction ends."""
    await connection.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", _ORDER_LOCK_CLASS, order_id)


async def try_lock_reaper(connection: asyncpg.Connection) -> bool:
    """The reaper's turn, held until the transaction ends; False if another replica has it."""
    return bool(await connection.fetchval("SELECT pg_try_advisory_xact_lock($1, 0)", _REAPER_LOCK_CLASS))


async def insert_reservation(
    connection: asyncpg.Connection, order_id: str, currency: str, total_minor: int, lines: Sequence[ReservedLine]
) -> None:
    await connection.execute(
        "INSERT INTO reservations (order_id, currency, total_minor) VALUES ($1, $2, $3)",
        uuid.UUID(order_id),
        currency,
        total_minor,
    )
    await connection.executemany(
        """INSERT INTO reservation_lines (order_id, product_id, name, quantity, unit_price_minor)
           VALUES ($1, $2, $3, $4, $5)""",
        [(uuid.UUID(order_id), ln.product_id, ln.name, ln.quantity, ln.unit_price_minor) for ln in lines],
    )


async def find_reservation(
    connection: asyncpg.Connection, order_id: str, *, for_update: bool = False
) -> Reservation | None:
    """An order's reservation with its lines (product id order); `for_update` locks its row."""
    row = await connection.fetchrow(
        "SELECT order_id, state, currency, total_minor, reason, expires_at FROM reservations WHERE order_id = $1"
        + (" FOR UPDATE" if for_update else ""),
        uuid.UUID(order_id),
    )
    if row is None:
        return None
    lines = await connection.fetch(
        """SELECT product_id, name, quantity, unit_price_minor FROM reservation_lines
           WHERE order_id = $1 ORDER BY product_id""",
        uuid.UUID(order_id),
    )
    return Reservation(
        order_id=str(row["order_id"]),
        state=ReservationState(row["state"]),
        currency=row["currency"],
        total_minor=int(row["total_minor"]),
        lines=tuple(ReservedLine(**dict(line)) for line in lines),
        reason=row["reason"],
        expires_at=row["expires_at"],
    )


async def set_reservation_state(
    connection: asyncpg.Connection, order_id: str, state: ReservationState, reason: str = ""
) -> None:
    await connection.execute(
        "UPDATE reservations SET state = $2, reason = $3 WHERE order_id = $1", uuid.UUID(order_id), state.value, reason
    )


async def mark_order_seen(connection: asyncpg.Connection, order_id: str) -> None:
    await connection.execute(
        "INSERT INTO seen_orders (order_id) VALUES ($1) ON CONFLICT DO NOTHING", uuid.UUID(order_id)
    )


async def lock_next_orphan(connection: asyncpg.Connection, grace_seconds: float) -> str | None:
    """Lock the oldest active reservation older than the grace period whose order was never seen.

    Rows locked by anyone else (an order being marked seen, or released) are skipped.
    """
    order_id = await connection.fetchval(
        """SELECT r.order_id FROM reservations r
           WHERE r.state = 'active' AND r.created_at < now() - make_interval(secs => $1)
             AND NOT EXISTS (SELECT 1 FROM seen_orders s WHERE s.order_id = r.order_id)
           ORDER BY r.created_at LIMIT 1
           FOR UPDATE OF r SKIP LOCKED""",
        grace_seconds,
    )
    return str(order_id) if order_id else None


async def ledger_mismatches(connection: asyncpg.Connection) -> tuple[int, list[LedgerMismatch]]:
    """(products checked, those whose counters differ from the ledger or the active reservations).

    One statement, so one snapshot: concurrent stock changes cannot make a
    consistent database look inconsistent.
    """
    rows = await connection.fetch(
        """WITH ledger AS (
               SELECT product_id, sum(on_hand_delta) AS on_hand, sum(reserved_delta) AS reserved
               FROM stock_ledger GROUP BY product_id),
           held AS (
               SELECT l.product_id, sum(l.quantity) AS reserved
               FROM reservation_lines l JOIN reservations r USING (order_id)
               WHERE r.state = 'active' GROUP BY l.product_id)
           SELECT p.id AS product_id, p.on_hand, p.reserved,
                  coalesce(ledger.on_hand, 0) AS ledger_on_hand,
                  coalesce(ledger.reserved, 0) AS ledger_reserved,
                  coalesce(held.reserved, 0) AS reserved_by_active_reservations,
                  count(*) OVER () AS checked
           FROM products p
           LEFT JOIN ledger ON ledger.product_id = p.id
           LEFT JOIN held ON held.product_id = p.id
           ORDER BY p.id"""
    )
    checked = int(rows[0]["checked"]) if rows else 0
    counted = [
        LedgerMismatch(
            product_id=row["product_id"],
            on_hand=int(row["on_hand"]),
            reserved=int(row["reserved"]),
            ledger_on_hand=int(row["ledger_on_hand"]),
            ledger_reserved=int(row["ledger_reserved"]),
            reserved_by_active_reservations=int(row["reserved_by_active_reservations"]),
        )
        for row in rows
    ]
    mismatches = [
        m
        for m in counted
        if not (m.on_hand == m.ledger_on_hand and m.reserved == m.ledger_reserved == m.reserved_by_active_reservations)
    ]
    return checked, mismatches
