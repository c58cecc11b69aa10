"""The platform's page-token codec: round trips, the filter check, and forged tokens refused as INVALID_ARGUMENT."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pytest

from shopmesh_platform.errors import InvalidArgument
from shopmesh_platform.paging import MAX_PAGE_SIZE, PageTokens, page_size, require_keys, require_type


@dataclass(frozen=True)
class _Cursor:
    last: str
    flavour: str


def _from_document(document: Mapping[str, Any]) -> _Cursor:
    require_keys(document, "last", "flavour")
    return _Cursor(require_type(document["last"], str, non_empty=True), require_type(document["flavour"], str))


TOKENS = PageTokens[_Cursor](
    domain="sample",
    filter_name="flavour",
    to_document=lambda c: {"last": c.last, "flavour": c.flavour},
    from_document=_from_document,
    filter_of=lambda c: c.flavour,
)


def _raw(document: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(document).encode()).decode().rstrip("=")


def test_a_token_round_trips_and_an_empty_token_is_the_first_page() -> None:
    cursor = _Cursor("item-42", "salty")
    token = TOKENS.encode(cursor)
    assert "=" not in token
    assert TOKENS.decode(token, "salty") == cursor
    assert TOKENS.decode("", "salty") is None


def test_a_token_from_another_listing_is_refused_naming_the_filter() -> None:
    with pytest.raises(InvalidArgument) as refused:
        TOKENS.decode(TOKENS.encode(_Cursor("item-42", "salty")), "sweet")
    assert "another flavour" in str(refused.value)
    assert refused.value.reason == "INVALID_PAGE_TOKEN"
    assert refused.value.domain == "sample"


@pytest.mark.parametrize(
    "forged",
    [
        "!!!",
        "bm9wZQ",
        _raw([1, 2]),
        _raw({"last": "x"}),
        _raw({"last": "x", "flavour": "salty", "extra": 1}),
        _raw({"last": "", "flavour": "salty"}),
        _raw({"last": 7, "flavour": "salty"}),
        _raw({"last": True, "flavour": "salty"}),
    ],
)
def test_forged_tokens_are_invalid_argument(forged: str) -> None:
    with pytest.raises(InvalidArgument) as refused:
        TOKENS.decode(forged, "salty")
    assert "is not a page token this service issued" in str(refused.value)


def test_page_size_defaults_and_caps() -> None:
    assert page_size(0) == 20
    assert page_size(-3) == 20
    assert page_size(7) == 7
    assert page_size(MAX_PAGE_SIZE + 1) == MAX_PAGE_SIZE
