"""Helpers for tests of the orders service: orders over REST, the orders store, order events."""

from __future__ import annotations

import json
import re
import urllib.request
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from prometheus_client import CollectorRegistry
from pymongo import AsyncMongoClient

from shopmesh_orders.config import OrdersConfig
from shopmesh_orders.domain import Orders
from shopmesh_orders.metrics import OrdersMetrics
from shopmesh_orders.records import ReservedStock
from shopmesh_orders.rules import order_id_for
from shopmesh_orders.store import OrderStore
from shopmesh_platform.docstore import Transition
from shopmesh_stack.stack import Stack
from tests.integration.helpers import HttpReply, http
from tests.integration.users_client import Account

LABEL = re.compile(r'(\w+)="([^"]*)"')
ADDRESS = {
    "street": "1 Analytical Way",
    "city": "London",
    "state": "Greater London",
    "zipCode": "N1 7AA",
    "country": "GB",
}


def order_body(account: Account, items: list[tuple[str, int, Any]], **fields: Any) -> dict[str, Any]:
    return {
        "userId": account.id,
        "items": [{"productId": p, "quantity": q, "price": price} for p, q, price in items],
        "shippingAddress": ADDRESS,
        "requestId": str(uuid.uuid4()),
        **fields,
    }


def post_order(stack: Stack, account: Account, body: dict[str, Any] | str | bytes) -> HttpReply:
    data = body if isinstance(body, str | bytes) else json.dumps(body)
    return http(stack, "POST", "/api/v1/orders", data, account.bearer)


def place(stack: Stack, account: Account, items: list[tuple[str, int, Any]]) -> dict[str, Any]:
    """A placed order (asserts success)."""
    reply = post_order(stack, account, order_body(account, items))
    assert reply.status == 200, reply.body
    order: dict[str, Any] = reply.json()
    return order


def get_order(stack: Stack, account: Account, order_id: str) -> HttpReply:
    return http(stack, "GET", f"/api/v1/orders/{order_id}", None, account.bearer)


def cancel_order(stack: Stack, account: Account, order_id: str) -> HttpReply:
    return http(stack, "POST", f"/api/v1/orders/{order_id}:cancel", "{}", account.bearer)


def set_status(stack: Stack, account: Account, order_id: str, status: str) -> HttpReply:
    return http(stack, "PATCH", f"/api/v1/orders/{order_id}/status", json.dumps({"status": status}), account.bearer)


def derived_order_id(account: Account, request_id: str) -> str:
    return order_id_for(account.id, request_id)


class NoStock:
    """The domain's stock port for tests that only move existing orders (never reserve)."""

    async def reserve(self, order_id: str, items: object) -> ReservedStock:
        raise AssertionError("tests do not place orders through the domain")


@asynccontextmanager
async def orders_domain(stack: Stack) -> AsyncIterator[tuple[Orders, OrderStore]]:
    """The orders domain on the stack's FerretDB, as a second replica would run it."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(stack.ferretdb.url, uuidRepresentation="standard")
    try:
        store = OrderStore(client.get_database("orders"))
        config = OrdersConfig.from_env({})
        yield Orders(store, NoStock(), config, OrdersMetrics(CollectorRegistry())), store
    finally:
        await client.close()


async def transitions(stack: Stack, order_id: str) -> list[Transition]:
    async with orders_domain(stack) as (_, store):
        return [transition async for transition in store.log.history(order_id)]


def sample(stack: Stack, service: str, name: str, **labels: str) -> float:
    """One series of `service`'s Prometheus endpoint, by name and labels in any order (0 when absent)."""
    url = f"http://127.0.0.1:{stack.settings.ports.metrics(service)}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    for line in text.splitlines():
        series, _, value = line.rpartition(" ")
        found_name, _, label_text = series.partition("{")
        if found_name == name and dict(LABEL.findall(label_text)) == labels:
            return float(value)
    return 0.0
