"""OWASP API6:2023 Unrestricted Access to Sensitive Business Flows.

The sensitive flow of a shop is checkout: placing an order reserves stock at
once, before anyone pays, so an unbounded customer (or a bot) could hoard a
product without buying it and keep everyone else from it.

What shopmesh does: a customer holds at most SHOPMESH_ORDERS_MAX_PENDING_PER_CUSTOMER
(5) unpaid orders (one more is 429 RESOURCE_EXHAUSTED, TOO_MANY_PENDING_ORDERS,
and reserves nothing); an order has at most 50 lines of at most 1000 units; and an
unpaid order is cancelled after SHOPMESH_ORDERS_EXPIRY_SECONDS (900 by default;
15 in the test stack) with reason `reservation_expired`, which releases its stock.
So one customer can hold back at most a bounded amount of stock, for a bounded
time. Placing orders also spends the caller's edge budget (`orders`: 200 a minute,
2000 an hour), and registering accounts the address's (`users.RegisterUser`).

What these tests prove: a customer who tries to hoard a product gets as many
pending orders as the cap allows and no more (the refused one reserves nothing),
each reservation carries its expiry, and once they expire the stock is available
again to everyone, and the customer may order again.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import pytest

from shopmesh_orders.config import OrdersConfig
from shopmesh_stack.stack import Stack
from tests.integration.conftest import TEST_SERVICE_ENV
from tests.integration.inventory_client import create_product, ledger_rows
from tests.integration.orders_client import cancel_order, derived_order_id, get_order, order_body, place, post_order
from tests.integration.owasp.support import new_account, new_admin
from tests.integration.users_client import Account, call
from tests.polling import eventually

UNITS_PER_ORDER = 10
PRICE = 3.0
EXPIRY_SECONDS = float(TEST_SERVICE_ENV["SHOPMESH_ORDERS_EXPIRY_SECONDS"])


@pytest.fixture(scope="module")
def admin(stack: Stack) -> Account:
    return new_admin(stack)


def available(stack: Stack, product_id: str) -> int:
    reply = call(stack, "GET", f"/api/v1/products/{product_id}")
    assert reply.status == 200, reply.body
    return int(reply.json()["stockAvailable"])


def timestamp(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


async def test_hoarding_stock_is_bounded_in_orders_and_in_time(stack: Stack, admin: Account) -> None:
    cap = OrdersConfig.from_env({}).max_pending_per_customer
    stock = UNITS_PER_ORDER * (cap + 1)
    created = await asyncio.to_thread(create_product, stack, admin, stock=stock, price=PRICE)
    assert created.status == 200, created.body
    product = created.json()["id"]
    hoarder, shopper = await asyncio.to_thread(new_account, stack), await asyncio.to_thread(new_account, stack)

    held: list[dict[str, Any]] = []
    for _ in range(cap):
        order = await asyncio.to_thread(place, stack, hoarder, [(product, UNITS_PER_ORDER, PRICE)])
        expires = timestamp(order["reservationExpiresAt"]) - timestamp(order["createdAt"])
        assert abs(expires.total_seconds() - EXPIRY_SECONDS) < 1, order
        held.append(order)
    body = order_body(hoarder, [(product, UNITS_PER_ORDER, PRICE)])
    refused = await asyncio.to_thread(post_order, stack, hoarder, body)
    assert refused.status == 429, refused.body
    assert "TOO_MANY_PENDING_ORDERS" in refused.body.decode()
    assert await ledger_rows(stack, derived_order_id(hoarder, body["requestId"])) == []
    # What the cap left is still there for others.
    assert await asyncio.to_thread(available, stack, product) == stock - cap * UNITS_PER_ORDER
    other = await asyncio.to_thread(place, stack, shopper, [(product, UNITS_PER_ORDER, PRICE)])
    assert await asyncio.to_thread(available, stack, product) == 0
    assert (await asyncio.to_thread(cancel_order, stack, shopper, other["id"])).status == 200

    # Unpaid, the hoarder's orders expire and their stock comes back.
    async def statuses() -> list[tuple[str, str]]:
        replies = [await asyncio.to_thread(get_order, stack, hoarder, order["id"]) for order in held]
        return [(r.json()["status"], r.json().get("cancellationReason", "")) for r in replies]

    expired = [("ORDER_STATUS_CANCELLED", "reservation_expired")] * cap
    await eventually(statuses, lambda found: found == expired, timeout=EXPIRY_SECONDS + 60, interval=0.5)
    await eventually(
        lambda: asyncio.to_thread(available, stack, product), lambda units: units == stock, timeout=60, interval=0.2
    )
    again = await asyncio.to_thread(post_order, stack, hoarder, order_body(hoarder, [(product, 1, PRICE)]))
    assert again.status == 200, again.body
    assert (await asyncio.to_thread(cancel_order, stack, hoarder, again.json()["id"])).status == 200
