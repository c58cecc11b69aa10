"""The pure rules of stock: what a reservation holds and whether an adjustment is allowed.

No database and no grpc: the domain loads and locks the rows, these functions
decide, and the domain writes what they decided. Errors name the line or the
product so a caller (orders) can tell its client which item is wrong.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from shopmesh_inventory.records import LineRequest, ProductRecord, Reservation, ReservedLine
from shopmesh_platform import money
from shopmesh_platform.errors import FailedPrecondition, FieldViolation, InvalidArgument

DOMAIN = "inventory"
# Stock fits the contract's int32 `stock_available` with room to spare.
MAX_ON_HAND = 1_000_000_000


def same_lines(reservation: Reservation, lines: Sequence[LineRequest]) -> bool:
    """Whether a ReserveStock retry asks for exactly what the reservation holds (any order)."""
    held = sorted((line.product_id, line.quantity) for line in reservation.lines)
    return held == sorted((line.product_id, line.quantity) for line in lines)


def price_lines(lines: Sequence[LineRequest], products: Mapping[str, ProductRecord]) -> tuple[str, list[ReservedLine]]:
    """The reservation's currency and priced lines, in product id order; all lines or an error.

    Unknown or inactive products, and lines whose expected price is not the
    catalog's, are INVALID_ARGUMENT naming every such line; lines in more than
    one currency, or more than a product's available stock, are
    FAILED_PRECONDITION naming the product.
    """
    unavailable = [
        (index, line.product_id)
        for index, line in enumerate(lines)
        if line.product_id not in products or not products[line.product_id].active
    ]
    if unavailable:
        names = ", ".join(product_id for _, product_id in unavailable)
        raise InvalidArgument(
            f"not in the catalog: {names}",
            reason="PRODUCT_UNAVAILABLE",
            domain=DOMAIN,
            metadata={"product_ids": names},
            field_violations=[
                FieldViolation(f"lines[{index}].product_id", f"product {product_id} is not in the catalog", "catalog")
                for index, product_id in unavailable
            ],
        )
    _check_expected_prices(lines, products)
    currencies = sorted({products[line.product_id].currency for line in lines})
    if len(currencies) > 1:
        raise FailedPrecondition(
            f"the products are priced in different currencies ({', '.join(currencies)}); one order has one currency",
            reason="MIXED_CURRENCIES",
            domain=DOMAIN,
        )
    for line in lines:
        product = products[line.product_id]
        if line.quantity > product.available:
            raise FailedPrecondition(
                f"not enough stock of {product.id}: {line.quantity} requested, {max(product.available, 0)} available",
                reason="INSUFFICIENT_STOCK",
                domain=DOMAIN,
                metadata={
                    "product_id": product.id,
                    "requested": str(line.quantity),
                    "available": str(max(product.available, 0)),
                },
            )
    priced = [
        ReservedLine(
            product_id=line.product_id,
            name=products[line.product_id].name,
            quantity=line.quantity,
            unit_price_minor=products[line.product_id].price_minor,
        )
        for line in sorted(lines, key=lambda line: line.product_id)
    ]
    return currencies[0], priced


def _check_expected_prices(lines: Sequence[LineRequest], products: Mapping[str, ProductRecord]) -> None:
    """Every line's expected price (when given) is the catalog's, compared exactly in minor units."""
    wrong = [
        (index, line, products[line.product_id])
        for index, line in enumerate(lines)
        if line.expected_price is not None and not _same_price(line.expected_price, products[line.product_id])
    ]
    if not wrong:
        return
    names = ", ".join(line.product_id for _, line, _ in wrong)
    raise InvalidArgument(
        f"the price of {names} is not the catalog's",
        reason="PRICE_MISMATCH",
        domain=DOMAIN,
        metadata={"product_ids": names},
        field_violations=[
            FieldViolation(
                f"lines[{index}].expected_price",
                f"{line.product_id} costs {money.to_major(product.price_minor, product.currency)} "
                f"{product.currency}, not {line.expected_price}",
                "catalog_price",
            )
            for index, line, product in wrong
        ],
    )


def _same_price(expected: float, product: ProductRecord) -> bool:
    try:
        return money.to_minor(expected, product.currency) == product.price_minor
    except InvalidArgument:
        # Finer than the currency allows (e.g. 5.5 for a JPY product): not the catalog price.
        return False


def total_minor(lines: Sequence[ReservedLine]) -> int:
    """Exact: integer minor units times integer quantities."""
    return sum(line.unit_price_minor * line.quantity for line in lines)


def check_adjustment(product: ProductRecord, delta: int) -> int:
    """The new on-hand count after `delta`; never below what is reserved, never above the maximum."""
    on_hand = product.on_hand + delta
    if on_hand < product.reserved:
        raise FailedPrecondition(
            f"{product.id} has {product.on_hand} on hand of which {product.reserved} reserved; "
            f"removing {-delta} would leave less than the reserved units",
            reason="STOCK_BELOW_RESERVED",
            domain=DOMAIN,
            metadata={
                "product_id": product.id,
                "on_hand": str(product.on_hand),
                "reserved": str(product.reserved),
                "delta": str(delta),
            },
        )
    if on_hand > MAX_ON_HAND:
        raise FailedPrecondition(
            f"{product.id} would have more than {MAX_ON_HAND} units on hand",
            reason="STOCK_LIMIT",
            domain=DOMAIN,
            metadata={"product_id": product.id},
        )
    return on_hand
