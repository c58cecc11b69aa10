"""Money: major units converted once to exact integer minor units, and back."""

from __future__ import annotations

import math

import pytest

from shopmesh_platform.errors import InvalidArgument
from shopmesh_platform.money import to_major, to_minor


@pytest.mark.parametrize(
    ("amount", "currency", "minor"),
    [
        (29.99, "USD", 2999),
        (0.1, "USD", 10),
        (0.29, "EUR", 29),
        (1e9, "USD", 100_000_000_000),
        (0.0, "USD", 0),
        (1500.0, "JPY", 1500),
        (1.234, "KWD", 1234),
        (19.99, "usd", 1999),
    ],
)
def test_major_units_become_exact_minor_units(amount: float, currency: str, minor: int) -> None:
    # 0.29 * 100 is 28.999999999999996 in float arithmetic; the conversion must not truncate it.
    assert to_minor(amount, currency) == minor
    assert to_major(minor, currency) == amount


@pytest.mark.parametrize(("amount", "currency"), [(29.999, "USD"), (10.5, "JPY"), (-1.0, "USD"), (math.inf, "USD")])
def test_amounts_the_currency_cannot_hold_are_refused_naming_the_field(amount: float, currency: str) -> None:
    with pytest.raises(InvalidArgument) as refused:
        to_minor(amount, currency, field="price")
    assert [v.field for v in refused.value.field_violations] == ["price"]
