"""The inventory service on the real stack: the catalog, admin stock changes, reservations
(idempotent, all-or-nothing, never oversold), settlements, the orphan reaper and the ledger."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest

from shopmesh.inventory.v1 import inventory_service_pb2 as pb
from shopmesh_inventory.domain import ORPHAN_REASON, Settlement
from shopmesh_inventory.ledger_check import check
from shopmesh_inventory.records import ReservationState
from shopmesh_stack.stack import Stack
from tests.integration.conftest import TEST_SERVICE_ENV
from tests.integration.helpers import http
from tests.integration.inventory_client import (
    adjust_stock,
    admin_account,
    counters,
    create_product,
    database,
    domain,
    events_of,
    get_product,
    ledger_rows,
    mark_seen,
    refusal,
    reserve,
)
from tests.integration.users_client import Account, register
from tests.polling import eventually

GRACE = float(TEST_SERVICE_ENV["SHOPMESH_INVENTORY_ORPHAN_GRACE_SECONDS"])


@pytest.fixture(scope="module")
def admin(stack: Stack) -> Account:
    return admin_account(stack)


@pytest.fixture(scope="module")
def customer(stack: Stack) -> Account:
    return register(stack)


@pytest.fixture
def stocked(stack: Stack, admin: Account) -> Iterator[str]:
    """A fresh product with 10 units, so stock numbers are exact whatever else runs."""
    reply = create_product(stack, admin, stock=10, price=4.2)
    assert reply.status == 200, reply.body
    yield reply.json()["id"]


def ledger_is_consistent(stack: Stack) -> None:
    report = asyncio.run(check(stack.postgres.dsn("inventory")))
    assert report.checked > 0
    assert report.consistent, report.mismatches


def violations(reply_body: dict[str, object]) -> set[str]:
    details = reply_body.get("details", [])
    assert isinstance(details, list)
    return {v["field"] for d in details if "fieldViolations" in d for v in d["fieldViolations"]}


def grpc_violations(error: grpc.RpcError) -> set[str]:
    from google.rpc import error_details_pb2
    from grpc_status import rpc_status

    status = rpc_status.from_call(error)
    assert status is not None
    found: set[str] = set()
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            found |= {v.field for v in bad.field_violations}
    return found


# The catalog


def test_browsing_lists_every_active_product_exactly_once_in_id_order(stack: Stack, admin: Account) -> None:
    hidden = create_product(stack, admin, active=False)
    assert hidden.status == 200, hidden.body
    assert hidden.json()["active"] is False
    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        reply = http(stack, "GET", f"/api/v1/products?pageSize=7&pageToken={token}")
        assert reply.status == 200, reply.body
        body = reply.json()
        assert len(body.get("products", [])) <= 7
        seen += [p["id"] for p in body.get("products", [])]
        pages += 1
        token = body.get("nextPageToken", "")
        if not token:
            break
    assert len(seen) == len(set(seen)), "a product was listed twice"
    assert seen == sorted(seen)
    assert "prod-123" in seen
    assert hidden.json()["id"] not in seen

    async def active_ids() -> list[str]:
        async with database(stack) as connection:
            return [r["id"] for r in await connection.fetch("SELECT id FROM products WHERE active ORDER BY id")]

    assert seen == asyncio.run(active_ids())
    assert len(seen) >= 20 and pages >= 3


def test_the_demo_catalog_has_prod_123_at_29_99_usd(stack: Stack) -> None:
    reply = http(stack, "GET", "/api/v1/products/prod-123")
    assert reply.status == 200, reply.body
    product = reply.json()
    assert (product["id"], product["price"], product["currency"]) == ("prod-123", 29.99, "USD")
    assert product["stockAvailable"] > 1000
    assert product["name"] and product["createdAt"]


def test_loading_the_demo_catalog_again_changes_nothing(stack: Stack) -> None:
    async def snapshot() -> tuple[list[tuple[object, ...]], int]:
        async with database(stack) as connection:
            products = [tuple(r) for r in await connection.fetch("SELECT * FROM products ORDER BY id")]
            return products, int(await connection.fetchval("SELECT count(*) FROM stock_ledger"))

    before = asyncio.run(snapshot())
    stack.postgres.provision()  # what every `make up` runs: migrations, then the demo catalog
    assert asyncio.run(snapshot()) == before


def test_an_unknown_product_is_404_and_not_found(stack: Stack) -> None:
    reply = http(stack, "GET", "/api/v1/products/prod-does-not-exist")
    assert reply.status == 404
    assert reply.json()["details"][0]["reason"] == "PRODUCT_NOT_FOUND"
    error = refusal(lambda: get_product(stack, "prod-does-not-exist"))
    assert error.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize("path", ["/api/v1/products/not-a-product-id", "/api/v1/products/prod-" + "x" * 65])
def test_a_malformed_product_id_is_400(stack: Stack, path: str) -> None:
    reply = http(stack, "GET", path)
    assert reply.status == 400
    assert violations(reply.json()) == {"id"}


@pytest.mark.parametrize("token", ["garbage!!", "eyJhZnRlciI6IDF9", "e30"])
def test_a_page_token_not_issued_by_the_service_is_400(stack: Stack, token: str) -> None:
    reply = http(stack, "GET", f"/api/v1/products?pageToken={token}")
    assert reply.status == 400, reply.body
    assert violations(reply.json()) == {"page_token"}


def test_an_inactive_product_is_404_for_customers(stack: Stack, admin: Account) -> None:
    created = create_product(stack, admin, active=False)
    assert created.status == 200
    assert http(stack, "GET", f"/api/v1/products/{created.json()['id']}").status == 404


# Admin: CreateProduct and AdjustStock


def test_create_product_is_for_admins_and_idempotent(stack: Stack, admin: Account, customer: Account) -> None:
    body = {"name": "Kettle", "description": "1.7 l", "price": 39.9, "currency": "usd", "stock": 5, "category": "k"}
    refused = create_product(stack, customer, **body)
    assert refused.status == 403
    created = create_product(stack, admin, **body)
    assert created.status == 200, created.body
    product = created.json()
    assert (product["price"], product["currency"], product["stockAvailable"], product["active"]) == (
        39.9,
        "USD",
        5,
        True,
    )
    again = create_product(stack, admin, **{**body, "id": product["id"]})
    assert again.status == 200 and again.json() == product
    different = create_product(stack, admin, **{**body, "id": product["id"], "price": 41})
    assert different.status == 409
    assert http(stack, "GET", f"/api/v1/products/{product['id']}").json()["price"] == 39.9
    ledger_is_consistent(stack)


def test_adjust_stock_is_for_admins_idempotent_and_kept_in_the_ledger(
    stack: Stack, admin: Account, customer: Account, stocked: str
) -> None:
    assert adjust_stock(stack, customer, stocked, 5).status == 403
    request_id = str(uuid.uuid4())
    added = adjust_stock(stack, admin, stocked, 5, requestId=request_id, reason="delivery")
    assert added.status == 200, added.body
    assert added.json()["stockAvailable"] == 15
    retried = adjust_stock(stack, admin, stocked, 5, requestId=request_id, reason="delivery")
    assert retried.status == 200 and retried.json()["stockAvailable"] == 15
    removed = adjust_stock(stack, admin, stocked, -3, reason="damaged")
    assert removed.json()["stockAvailable"] == 12

    async def reasons() -> list[tuple[int, str]]:
        async with database(stack) as connection:
            rows = await connection.fetch(
                "SELECT on_hand_delta, reason FROM stock_ledger WHERE product_id = $1 ORDER BY id", stocked
            )
        return [(int(r["on_hand_delta"]), r["reason"]) for r in rows]

    assert asyncio.run(reasons()) == [(10, "initial stock"), (5, "delivery"), (-3, "damaged")]
    ledger_is_consistent(stack)


def test_adjust_stock_never_goes_below_what_is_reserved(stack: Stack, admin: Account, stocked: str) -> None:
    order_id = str(uuid.uuid4())
    asyncio.run(mark_seen(stack, order_id))
    reserve(stack, order_id, [(stocked, 6)])
    refused = adjust_stock(stack, admin, stocked, -5)
    assert refused.status == 400, refused.body  # FAILED_PRECONDITION
    assert refused.json()["code"] == 9
    assert refused.json()["details"][0]["reason"] == "STOCK_BELOW_RESERVED"
    assert asyncio.run(counters(stack, stocked)) == (10, 6)
    assert adjust_stock(stack, admin, stocked, -4).json()["stockAvailable"] == 0
    ledger_is_consistent(stack)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"delta": "abc"}, "delta"),
        ({"delta": 0}, "delta"),
        ({"delta": 2_000_000}, "delta"),
        ({"delta": 1, "reason": ""}, "reason"),
        ({"delta": 1, "requestId": "not-a-uuid"}, "request_id"),
    ],
)
def test_bad_adjustments_are_400_naming_the_field_and_change_nothing(
    stack: Stack, admin: Account, stocked: str, body: dict[str, object], field: str
) -> None:
    reply = adjust_stock(stack, admin, stocked, **{"delta": 1, **body})
    assert reply.status == 400, reply.body
    named = violations(reply.json()) or {reply.json()["message"]}
    assert any(field in name for name in named), reply.body
    assert asyncio.run(counters(stack, stocked)) == (10, 0)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"price": "abc"}, "price"),
        ({"price": 1.234}, "price"),
        ({"stock": -1}, "stock"),
        ({"currency": "US"}, "currency"),
    ],
)
def test_bad_products_are_400_naming_the_field_and_nothing_is_created(
    stack: Stack, admin: Account, fields: dict[str, object], field: str
) -> None:
    reply = create_product(stack, admin, **fields)
    assert reply.status == 400, reply.body
    named = violations(reply.json()) or {reply.json()["message"]}
    assert any(field in name for name in named), reply.body


# ReserveStock (internal: orders)


def test_reserving_lowers_available_stock_once_per_order(stack: Stack, stocked: str) -> None:
    order_id = str(uuid.uuid4())
    asyncio.run(mark_seen(stack, order_id))
    reservation = reserve(stack, order_id, [(stocked, 3), ("prod-123", 2)]).reservation
    assert reservation.state == pb.RESERVATION_STATE_ACTIVE
    assert [(line.product_id, line.quantity, line.unit_price_minor) for line in reservation.lines] == [
        ("prod-123", 2, 2999),
        (stocked, 3, 420),
    ]
    assert (reservation.total_minor, reservation.currency) == (2 * 2999 + 3 * 420, "USD")
    assert get_product(stack, stocked).stock_available == 7
    again = reserve(stack, order_id, [("prod-123", 2), (stocked, 3)]).reservation
    assert again == reservation
    assert get_product(stack, stocked).stock_available == 7
    assert asyncio.run(ledger_rows(stack, order_id)) == [("prod-123", "reserve", 0, 2), (stocked, "reserve", 0, 3)]
    assert asyncio.run(events_of(stack, order_id)) == ["StockReserved"]
    conflicting = refusal(lambda: reserve(stack, order_id, [(stocked, 4)]))
    assert conflicting.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert get_product(stack, stocked).stock_available == 7
    ledger_is_consistent(stack)


def test_thirty_concurrent_reservations_for_ten_units_reserve_exactly_ten(stack: Stack, stocked: str) -> None:
    orders = [str(uuid.uuid4()) for _ in range(30)]

    async def mark_all() -> None:
        for order_id in orders:
            await mark_seen(stack, order_id)

    asyncio.run(mark_all())

    def attempt(order_id: str) -> grpc.StatusCode:
        try:
            reserve(stack, order_id, [(stocked, 1)])
        except grpc.RpcError as error:
            assert stocked in (error.details() or "")
            return error.code()
        return grpc.StatusCode.OK

    with ThreadPoolExecutor(max_workers=30) as pool:
        outcomes = list(pool.map(attempt, orders))
    assert outcomes.count(grpc.StatusCode.OK) == 10
    assert outcomes.count(grpc.StatusCode.FAILED_PRECONDITION) == 20
    assert asyncio.run(counters(stack, stocked)) == (10, 10)
    assert get_product(stack, stocked).stock_available == 0
    ledger_is_consistent(stack)


def test_reserve_is_all_lines_or_none(stack: Stack, stocked: str) -> None:
    short = str(uuid.uuid4())
    error = refusal(lambda: reserve(stack, short, [("prod-123", 1), (stocked, 11)]))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert stocked in (error.details() or "")
    unknown = str(uuid.uuid4())
    error = refusal(lambda: reserve(stack, unknown, [("prod-123", 1), ("prod-nope", 1)]))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert grpc_violations(error) == {"lines[1].product_id"}
    for order_id in (short, unknown):
        assert asyncio.run(ledger_rows(stack, order_id)) == []
    assert asyncio.run(counters(stack, stocked)) == (10, 0)


@pytest.mark.parametrize(
    ("lines", "field"),
    [
        ([("prod-123", 0)], "lines[0].quantity"),
        ([("prod-123", -1)], "lines[0].quantity"),
        ([("prod-123", 1001)], "lines[0].quantity"),
        ([("prod-123", 2_000_000_000)], "lines[0].quantity"),
        ([], "lines"),
        ([("prod-123", 1), ("prod-123", 1)], "lines"),
        ([("not a product", 1)], "lines[0].product_id"),
    ],
)
def test_bad_reservations_are_invalid_argument_naming_the_field_and_write_nothing(
    stack: Stack, lines: list[tuple[str, int]], field: str
) -> None:
    order_id = str(uuid.uuid4())
    error = refusal(lambda: reserve(stack, order_id, lines))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in grpc_violations(error)
    assert asyncio.run(ledger_rows(stack, order_id)) == []


@pytest.mark.parametrize("identity", ["payments", "developer", "edge"])
def test_only_orders_may_reserve(stack: Stack, stocked: str, identity: str) -> None:
    error = refusal(lambda: reserve(stack, str(uuid.uuid4()), [(stocked, 1)], identity=identity))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert get_product(stack, stocked).stock_available == 10


# Settlements (driven by order events) and the orphan reaper


async def test_release_and_commit_apply_once(stack: Stack, stocked: str) -> None:
    released, committed = str(uuid.uuid4()), str(uuid.uuid4())
    async with domain(stack) as inventory:
        for order_id in (released, committed):
            await inventory.mark_order_seen(order_id)
        await asyncio.to_thread(reserve, stack, released, [(stocked, 2)])
        await asyncio.to_thread(reserve, stack, committed, [(stocked, 3)])
        assert await counters(stack, stocked) == (10, 5)

        assert await inventory.cancel(released, "cancelled by the owner") is Settlement.APPLIED
        assert await inventory.cancel(released, "cancelled by the owner") is Settlement.ALREADY_DONE
        assert await inventory.commit(released) is Settlement.NOT_APPLICABLE
        assert await counters(stack, stocked) == (10, 3)

        assert await inventory.commit(committed) is Settlement.APPLIED
        assert await inventory.commit(committed) is Settlement.ALREADY_DONE
        assert await counters(stack, stocked) == (7, 0)
        # A paid order cancelled later: its units come back on hand, once.
        assert await inventory.cancel(committed, "refunded") is Settlement.APPLIED
        assert await inventory.cancel(committed, "refunded") is Settlement.ALREADY_DONE
        assert await counters(stack, stocked) == (10, 0)
        assert (await inventory.get_reservation(committed)).state is ReservationState.RETURNED
        assert await inventory.release(str(uuid.uuid4()), "x") is Settlement.NO_RESERVATION

    assert await ledger_rows(stack, released) == [(stocked, "reserve", 0, 2), (stocked, "release", 0, -2)]
    assert await ledger_rows(stack, committed) == [
        (stocked, "reserve", 0, 3),
        (stocked, "commit", -3, -3),
        (stocked, "return", 3, 0),
    ]
    assert await events_of(stack, released) == ["StockReserved", "StockReleased"]
    assert await events_of(stack, committed) == ["StockReserved", "StockCommitted", "StockReturned"]
    report = await check(stack.postgres.dsn("inventory"))
    assert report.consistent, report.mismatches


async def test_the_reaper_releases_orphans_and_only_orphans(stack: Stack, stocked: str) -> None:
    orphan, stored = str(uuid.uuid4()), str(uuid.uuid4())
    await mark_seen(stack, stored)
    await asyncio.to_thread(reserve, stack, orphan, [(stocked, 4)])
    await asyncio.to_thread(reserve, stack, stored, [(stocked, 1)])
    assert await counters(stack, stocked) == (10, 5)

    async def state_of(order_id: str) -> ReservationState:
        async with domain(stack) as inventory:
            return (await inventory.get_reservation(order_id)).state

    await eventually(lambda: state_of(orphan), lambda s: s is ReservationState.RELEASED, timeout=GRACE + 30)
    assert await counters(stack, stocked) == (10, 1)
    assert await state_of(stored) is ReservationState.ACTIVE
    assert await ledger_rows(stack, orphan) == [(stocked, "reserve", 0, 4), (stocked, "release", 0, -4)]
    async with database(stack) as connection:
        reason = await connection.fetchval("SELECT reason FROM reservations WHERE order_id = $1", uuid.UUID(orphan))
    assert reason == ORPHAN_REASON
    # Well past the grace period, the stored order's reservation is still held.
    async with database(stack) as connection:
        age = await connection.fetchval(
            "SELECT extract(epoch FROM now() - created_at) FROM reservations WHERE order_id = $1", uuid.UUID(stored)
        )
    assert float(age) > GRACE
    assert await state_of(stored) is ReservationState.ACTIVE


# The ledger check and metrics


def test_make_ledger_check_passes_on_the_stack(stack: Stack) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "shopmesh_inventory.ledger_check", "--dsn", stack.postgres.dsn("inventory")],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "stock ledger consistent" in result.stdout


def test_the_ledger_check_finds_a_product_that_disagrees_with_its_ledger(stack: Stack, stocked: str) -> None:
    async def tamper() -> None:
        async with database(stack) as connection:
            await connection.execute("UPDATE products SET on_hand = on_hand + 1 WHERE id = $1", stocked)

    async def repair() -> None:
        async with database(stack) as connection:
            await connection.execute("UPDATE products SET on_hand = on_hand - 1 WHERE id = $1", stocked)

    asyncio.run(tamper())
    try:
        report = asyncio.run(check(stack.postgres.dsn("inventory")))
        assert [m.product_id for m in report.mismatches] == [stocked]
        assert report.mismatches[0].on_hand == report.mismatches[0].ledger_on_hand + 1
    finally:
        asyncio.run(repair())
    ledger_is_consistent(stack)


def test_reservation_outcomes_are_counted(stack: Stack, stocked: str) -> None:
    def scrape() -> str:
        port = stack.settings.ports.metrics("inventory")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            return str(response.read().decode())

    def count(text: str, outcome: str) -> float:
        prefix = f'inventory_reservations_total{{outcome="{outcome}"}} '
        return float(next(line for line in text.splitlines() if line.startswith(prefix)).split()[-1])

    before = scrape()
    order_id = str(uuid.uuid4())
    reserve(stack, order_id, [(stocked, 1)])
    reserve(stack, order_id, [(stocked, 1)])
    refusal(lambda: reserve(stack, str(uuid.uuid4()), [(stocked, 100)]))
    after = scrape()
    assert count(after, "reserved") == count(before, "reserved") + 1
    assert count(after, "replayed") == count(before, "replayed") + 1
    assert count(after, "insufficient_stock") == count(before, "insufficient_stock") + 1
