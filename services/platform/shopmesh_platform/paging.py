"""Opaque page tokens (AIP-158): where the previous page ended, and for which listing.

A token is base64url of a small JSON document. It is opaque to clients (its
form may change) but not secret: it only repeats what the client could list.
Each service says what its cursor holds; this module owns the encoding, the
page-size rule and the one refusal: a token that does not decode, or one used
with another filter than the listing it came from, is INVALID_ARGUMENT with
reason INVALID_PAGE_TOKEN.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from shopmesh_platform.errors import FieldViolation, InvalidArgument

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100

CursorT = TypeVar("CursorT")


def page_size(requested: int) -> int:
    """The contracts' default for 0 (or less), capped at the maximum."""
    return DEFAULT_PAGE_SIZE if requested <= 0 else min(requested, MAX_PAGE_SIZE)


class MalformedCursor(ValueError):
    """Raised by a service's `from_document` when a decoded document is not its cursor."""


@dataclass(frozen=True)
class PageTokens(Generic[CursorT]):
    """A service's page-token codec.

    `to_document` turns a cursor into JSON-able values; `from_document` turns a
    decoded document back into a cursor, raising MalformedCursor (or ValueError,
    TypeError, KeyError) when it is not one; `filter_of` names the listing filter
    a cursor was made for, so a token is refused with another filter.
    """

    domain: str
    filter_name: str
    to_document: Callable[[CursorT], Mapping[str, Any]]
    from_document: Callable[[Mapping[str, Any]], CursorT]
    filter_of: Callable[[CursorT], object]

    def encode(self, cursor: CursorT) -> str:
        document = json.dumps(dict(self.to_document(cursor)), separators=(",", ":"))
        return base64.urlsafe_b64encode(document.encode()).decode().rstrip("=")

    def decode(self, token: str, listing_filter: object) -> CursorT | None:
        """The cursor of `token` (None for the first page); InvalidArgument if it is not ours or not for this filter."""
        if not token:
            return None
        try:
            document = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
            if not isinstance(document, dict):
                raise MalformedCursor
            cursor = self.from_document(document)
        except (binascii.Error, ValueError, TypeError, KeyError):
            raise self._invalid("is not a page token this service issued") from None
        if self.filter_of(cursor) != listing_filter:
            raise self._invalid(f"belongs to a listing with another {self.filter_name}")
        return cursor

    def _invalid(self, description: str) -> InvalidArgument:
        return InvalidArgument(
            f"page_token {description}",
            reason="INVALID_PAGE_TOKEN",
            domain=self.domain,
            field_violations=[FieldViolation("page_token", description, "page_token.valid")],
        )


def require_keys(document: Mapping[str, Any], *keys: str) -> None:
    """MalformedCursor unless `document` has exactly these keys."""
    if set(document) != set(keys):
        raise MalformedCursor


def require_type(value: object, kind: type, *, non_empty: bool = False) -> Any:
    """`value` if it is exactly of `kind` (bool is not an int here) and, when asked, not empty."""
    if type(value) is not kind or (non_empty and not value):
        raise MalformedCursor
    return value
