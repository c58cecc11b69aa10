"""Money: major units at the edge (a `double`, e.g. 29.99), exact integer minor units inside.

A price is converted once, from the shortest decimal that the double prints as
(which is what the client wrote, since the contract allows at most two
decimals), so no float arithmetic ever touches an amount.
"""

from __future__ import annotations

import math
from decimal import Decimal

from shopmesh_platform.errors import FieldViolation, InvalidArgument

# ISO 4217 minor-unit exponents that differ from the usual 2.
_EXPONENTS = {
    **dict.fromkeys(("BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "VND", "VUV"), 0),
    **dict.fromkeys(("XAF", "XOF", "XPF"), 0),
    **dict.fromkeys(("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"), 3),
}


def exponent(currency: str) -> int:
    """Digits after the decimal point of `currency`'s minor unit."""
    return _EXPONENTS.get(currency.upper(), 2)


def to_minor(amount: float, currency: str, *, field: str = "price", domain: str = "platform") -> int:
    """`amount` major units as integer minor units; an amount finer than the currency allows is refused."""
    if not math.isfinite(amount) or amount < 0:
        raise _invalid(field, "must be a finite amount of at least 0", domain)
    scaled = Decimal(repr(amount)).scaleb(exponent(currency))
    if scaled != scaled.to_integral_value():
        raise _invalid(field, f"has more decimal places than {currency.upper()} has", domain)
    return int(scaled)


def to_major(minor: int, currency: str) -> float:
    """Integer minor units as the major-unit number the contract carries (2999 USD -> 29.99)."""
    return float(Decimal(minor).scaleb(-exponent(currency)))


def _invalid(field: str, description: str, domain: str) -> InvalidArgument:
    return InvalidArgument(
        f"{field} {description}",
        reason="INVALID_AMOUNT",
        domain=domain,
        field_violations=[FieldViolation(field, description, "money.minor_units")],
    )
