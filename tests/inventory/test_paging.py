"""Page tokens: opaque, round-trip, bound to their filter, garbage refused."""

from __future__ import annotations

import base64

import pytest

from shopmesh_inventory import paging
from shopmesh_platform.errors import InvalidArgument


def test_a_token_round_trips_with_its_category() -> None:
    token = paging.encode(paging.Cursor(after="prod-123", category="kitchen"))
    assert "prod-123" not in token  # opaque, not the bare id
    assert paging.decode(token, "kitchen") == paging.Cursor(after="prod-123", category="kitchen")
    assert paging.decode("", "kitchen") is None


@pytest.mark.parametrize(
    "token",
    [
        "not base64 !!",
        base64.urlsafe_b64encode(b"not json").decode(),
        base64.urlsafe_b64encode(b"[1, 2]").decode(),
        base64.urlsafe_b64encode(b'{"after": 5, "category": ""}').decode(),
        base64.urlsafe_b64encode(b'{"after": "", "category": ""}').decode(),
        base64.urlsafe_b64encode(b'{"after": "prod-1", "category": "", "x": 1}').decode(),
    ],
)
def test_garbage_is_invalid_argument_naming_page_token(token: str) -> None:
    with pytest.raises(InvalidArgument) as refused:
        paging.decode(token, "")
    assert [v.field for v in refused.value.field_violations] == ["page_token"]


def test_a_token_from_another_category_is_refused() -> None:
    token = paging.encode(paging.Cursor(after="prod-1", category="kitchen"))
    with pytest.raises(InvalidArgument):
        paging.decode(token, "home")


@pytest.mark.parametrize(("requested", "size"), [(0, 20), (-3, 20), (5, 5), (100, 100), (1000, 100)])
def test_page_size_defaults_and_caps(requested: int, size: int) -> None:
    assert paging.page_size(requested) == size
