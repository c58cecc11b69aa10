"""The pure stock rules: pricing a reservation, retries, adjustments."""

from __future__ import annotations

import datetime as dt

import pytest

from shopmesh_inventory import rules
from shopmesh_inventory.records import (
    LineRequest,
    NewProduct,
    ProductRecord,
    Reservation,
    ReservationState,
    ReservedLine,
)
from shopmesh_platform.errors import FailedPrecondition, InvalidArgument

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def product(
    product_id: str,
    *,
    price: int = 1000,
    on_hand: int = 10,
    reserved: int = 0,
    currency: str = "USD",
    active: bool = True,
) -> ProductRecord:
    return ProductRecord(
        id=product_id,
        name=f"name of {product_id}",
        description="",
        price_minor=price,
        currency=currency,
        category="",
        image_url="",
        active=active,
        initial_stock=on_hand,
        on_hand=on_hand,
        reserved=reserved,
        created_at=NOW,
        updated_at=NOW,
    )


def catalog(*products: ProductRecord) -> dict[str, ProductRecord]:
    return {p.id: p for p in products}


def test_lines_are_priced_from_the_catalog_in_id_order_and_totalled_exactly() -> None:
    lines = [LineRequest("prod-b", 3), LineRequest("prod-a", 2)]
    currency, priced = rules.price_lines(lines, catalog(product("prod-a", price=2999), product("prod-b", price=10)))
    assert currency == "USD"
    assert [(p.product_id, p.quantity, p.unit_price_minor, p.name) for p in priced] == [
        ("prod-a", 2, 2999, "name of prod-a"),
        ("prod-b", 3, 10, "name of prod-b"),
    ]
    assert rules.total_minor(priced) == 5998 + 30


def test_unknown_and_inactive_products_are_named_by_line() -> None:
    lines = [LineRequest("prod-a", 1), LineRequest("prod-gone", 1), LineRequest("prod-off", 1)]
    with pytest.raises(InvalidArgument) as refused:
        rules.price_lines(lines, catalog(product("prod-a"), product("prod-off", active=False)))
    assert refused.value.reason == "PRODUCT_UNAVAILABLE"
    assert [v.field for v in refused.value.field_violations] == ["lines[1].product_id", "lines[2].product_id"]
    assert "prod-gone" in refused.value.message and "prod-off" in refused.value.message


def test_not_enough_available_stock_names_the_product() -> None:
    lines = [LineRequest("prod-a", 1), LineRequest("prod-b", 4)]
    with pytest.raises(FailedPrecondition) as refused:
        rules.price_lines(lines, catalog(product("prod-a"), product("prod-b", on_hand=10, reserved=7)))
    assert refused.value.reason == "INSUFFICIENT_STOCK"
    assert refused.value.metadata == {"product_id": "prod-b", "requested": "4", "available": "3"}


def test_exactly_the_available_stock_can_be_reserved() -> None:
    _, priced = rules.price_lines([LineRequest("prod-b", 3)], catalog(product("prod-b", on_hand=10, reserved=7)))
    assert priced[0].quantity == 3


def test_one_reservation_has_one_currency() -> None:
    lines = [LineRequest("prod-a", 1), LineRequest("prod-b", 1)]
    with pytest.raises(FailedPrecondition) as refused:
        rules.price_lines(lines, catalog(product("prod-a"), product("prod-b", currency="EUR")))
    assert refused.value.reason == "MIXED_CURRENCIES"


def test_a_retry_must_ask_for_the_same_lines_in_any_order() -> None:
    held = Reservation(
        order_id="o",
        state=ReservationState.ACTIVE,
        currency="USD",
        total_minor=0,
        lines=(ReservedLine("prod-a", "a", 2, 0), ReservedLine("prod-b", "b", 1, 0)),
    )
    assert rules.same_lines(held, [LineRequest("prod-b", 1), LineRequest("prod-a", 2)])
    assert not rules.same_lines(held, [LineRequest("prod-a", 2)])
    assert not rules.same_lines(held, [LineRequest("prod-a", 2), LineRequest("prod-b", 2)])


def test_an_adjustment_never_leaves_less_than_is_reserved() -> None:
    held = product("prod-a", on_hand=10, reserved=6)
    assert rules.check_adjustment(held, -4) == 6
    assert rules.check_adjustment(held, 5) == 15
    with pytest.raises(FailedPrecondition) as refused:
        rules.check_adjustment(held, -5)
    assert refused.value.reason == "STOCK_BELOW_RESERVED"
    with pytest.raises(FailedPrecondition):
        rules.check_adjustment(held, rules.MAX_ON_HAND)


def test_a_create_retry_matches_only_the_same_content() -> None:
    existing = product("prod-a", price=2999, on_hand=3, reserved=2)
    same = NewProduct("prod-a", "name of prod-a", "", 2999, "USD", "", "", True, 3)
    assert same.matches(existing)  # stock moved since creation: still the same product
    assert not NewProduct("prod-a", "name of prod-a", "", 3000, "USD", "", "", True, 3).matches(existing)
    assert not NewProduct("prod-a", "name of prod-a", "", 2999, "USD", "", "", True, 4).matches(existing)


def test_an_expected_price_that_is_not_the_catalogs_refuses_naming_the_line() -> None:
    products = {"prod-1": product("prod-1", price=2999), "prod-2": product("prod-2", price=500)}
    agreed = [LineRequest("prod-1", 1, expected_price=29.99), LineRequest("prod-2", 1, expected_price=5.0)]
    assert rules.price_lines(agreed, products)[0] == "USD"
    with pytest.raises(InvalidArgument) as refused:
        rules.price_lines([LineRequest("prod-1", 1, 29.99), LineRequest("prod-2", 1, 4.99)], products)
    assert refused.value.reason == "PRICE_MISMATCH"
    assert [v.field for v in refused.value.field_violations] == ["lines[1].expected_price"]
    # Finer than the currency allows is not the catalog price either (never an error of another kind).
    with pytest.raises(InvalidArgument):
        rules.price_lines([LineRequest("prod-1", 1, 29.991)], products)
    # No expected price: priced from the catalog, unchecked (the contract's default).
    assert rules.price_lines([LineRequest("prod-1", 1)], products)[1][0].unit_price_minor == 2999
