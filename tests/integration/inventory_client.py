"""Helpers for tests of the inventory service: admins, stubs as a mesh identity, the database."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import grpc
from prometheus_client import CollectorRegistry

from shopmesh.inventory.v1 import inventory_service_pb2 as pb
from shopmesh.inventory.v1 import inventory_service_pb2_grpc
from shopmesh_inventory.domain import Inventory
from shopmesh_inventory.metrics import InventoryMetrics
from shopmesh_stack.channels import channel
from shopmesh_stack.stack import Stack
from shopmesh_users.admin import promote
from tests.integration.helpers import HttpReply, http
from tests.integration.users_client import PASSWORD, Account, register


def admin_account(stack: Stack) -> Account:
    """A new account promoted to admin (as `make promote-admin` does), logged in again for the role."""
    account = register(stack)
    assert asyncio.run(promote(stack.postgres.dsn("users"), account.email))
    login = http(stack, "POST", "/api/v1/users/login", json.dumps({"email": account.email, "password": PASSWORD}))
    assert login.status == 200, login.body
    return Account(account.id, account.email, login.json()["token"])


def new_product_id() -> str:
    return f"prod-test-{uuid.uuid4().hex[:12]}"


def create_product(stack: Stack, admin: Account, **fields: Any) -> HttpReply:
    body = {"id": new_product_id(), "name": "Test product", "price": 12.5, "currency": "USD", "stock": 10, **fields}
    return http(stack, "POST", "/api/v1/products", json.dumps(body), admin.bearer)


def adjust_stock(stack: Stack, account: Account, product_id: str, delta: Any, **fields: Any) -> HttpReply:
    body = {"delta": delta, "requestId": str(uuid.uuid4()), "reason": "test", **fields}
    return http(stack, "POST", f"/api/v1/products/{product_id}:adjustStock", json.dumps(body), account.bearer)


def reserve(
    stack: Stack, order_id: str, lines: list[tuple[str, int]], identity: str = "orders"
) -> pb.ReserveStockResponse:
    """ReserveStock directly on the inventory service as `identity` (mutual TLS); raises grpc.RpcError."""
    request = pb.ReserveStockRequest(
        order_id=order_id, lines=[pb.ReservationLineInput(product_id=p, quantity=q) for p, q in lines]
    )
    with channel(stack.settings, "inventory", identity=identity) as chan:
        return inventory_service_pb2_grpc.InventoryServiceStub(chan).ReserveStock(request, timeout=15)


def refusal(call: Any) -> grpc.RpcError:
    """The error `call()` raises (fails the test if it succeeds)."""
    try:
        call()
    except grpc.RpcError as error:
        return error
    raise AssertionError("the call succeeded")


def get_product(stack: Stack, product_id: str) -> pb.Product:
    with channel(stack.settings, "inventory") as chan:
        return inventory_service_pb2_grpc.InventoryServiceStub(chan).GetProduct(
            pb.GetProductRequest(id=product_id), timeout=10
        )


@asynccontextmanager
async def database(stack: Stack) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(stack.postgres.dsn("inventory"))
    try:
        yield connection
    finally:
        await connection.close()


@asynccontextmanager
async def domain(stack: Stack) -> AsyncIterator[Inventory]:
    """The inventory domain on the stack's database, as the order-events consumer will call it."""
    pool = await asyncpg.create_pool(stack.postgres.dsn("inventory"), min_size=0, max_size=4)
    try:
        yield Inventory(pool, InventoryMetrics(CollectorRegistry()))
    finally:
        await pool.close()


async def counters(stack: Stack, product_id: str) -> tuple[int, int]:
    """(on_hand, reserved) of a product, from its row."""
    async with database(stack) as connection:
        row = await connection.fetchrow("SELECT on_hand, reserved FROM products WHERE id = $1", product_id)
    return int(row["on_hand"]), int(row["reserved"])


async def ledger_rows(stack: Stack, order_id: str) -> list[tuple[str, str, int, int]]:
    """(product, kind, on_hand delta, reserved delta) of an order's ledger rows, in order."""
    async with database(stack) as connection:
        rows = await connection.fetch(
            "SELECT product_id, kind, on_hand_delta, reserved_delta FROM stock_ledger WHERE order_id = $1 ORDER BY id",
            uuid.UUID(order_id),
        )
    return [(r["product_id"], r["kind"], int(r["on_hand_delta"]), int(r["reserved_delta"])) for r in rows]


async def events_of(stack: Stack, order_id: str) -> list[str]:
    """Event types the inventory outbox holds for an order, in order."""
    async with database(stack) as connection:
        rows = await connection.fetch("SELECT event_type FROM outbox WHERE aggregate_id = $1 ORDER BY id", order_id)
    return [r["event_type"].rsplit(".", 1)[-1] for r in rows]


async def mark_seen(stack: Stack, order_id: str) -> None:
    """What the order-events consumer does on OrderCreated: this reservation is no orphan."""
    async with domain(stack) as inventory:
        await inventory.mark_order_seen(order_id)
