"""ListOrders page tokens, and inventory's refusals as CreateOrder's errors."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc import aio

from shopmesh_orders import paging
from shopmesh_orders.stock import STATUS_DETAILS_KEY, refusal
from shopmesh_platform.errors import FailedPrecondition, InvalidArgument, Unavailable


def test_a_page_token_round_trips_and_is_bound_to_its_filter() -> None:
    cursor = paging.Cursor(1_700_000_000_123, "2b1f0c1e-0000-4000-8000-000000000000", "u|PENDING")
    assert paging.decode(paging.encode(cursor), "u|PENDING") == cursor
    assert paging.decode("", "u|") is None
    with pytest.raises(InvalidArgument, match="another filter"):
        paging.decode(paging.encode(cursor), "u|")
    for forged in ("bm9wZQ", "!!!", paging.encode(paging.Cursor(1, "", "u|"))):
        with pytest.raises(InvalidArgument):
            paging.decode(forged, "u|")


def _packed(message: Any) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def inventory_error(
    code: grpc.StatusCode, reason: str, fields: tuple[str, ...] = (), message: str = "m"
) -> aio.AioRpcError:
    details = [_packed(error_details_pb2.ErrorInfo(reason=reason, domain="inventory.shopmesh.dev"))]
    if fields:
        bad = error_details_pb2.BadRequest(
            field_violations=[error_details_pb2.BadRequest.FieldViolation(field=f, description="d") for f in fields]
        )
        details.append(_packed(bad))
    status = status_pb2.Status(code=code.value[0], message=message, details=details)
    trailers = aio.Metadata((STATUS_DETAILS_KEY, status.SerializeToString()))
    return aio.AioRpcError(code, aio.Metadata(), trailers, details=message)


def test_inventory_line_violations_name_the_order_items() -> None:
    error = refusal(
        inventory_error(
            grpc.StatusCode.INVALID_ARGUMENT, "PRICE_MISMATCH", ("lines[1].expected_price", "lines[0].product_id")
        )
    )
    assert isinstance(error, InvalidArgument)
    assert error.reason == "PRICE_MISMATCH"
    assert [v.field for v in error.field_violations] == ["items[1].price", "items[0].product_id"]


def test_stock_and_retry_refusals_stay_failed_preconditions() -> None:
    short = refusal(inventory_error(grpc.StatusCode.FAILED_PRECONDITION, "INSUFFICIENT_STOCK", message="not enough"))
    assert isinstance(short, FailedPrecondition) and short.reason == "INSUFFICIENT_STOCK"
    assert short.message == "not enough"
    reused = refusal(inventory_error(grpc.StatusCode.FAILED_PRECONDITION, "RESERVATION_MISMATCH"))
    assert reused.reason == "REQUEST_ID_REUSED"


@pytest.mark.parametrize(
    "code", [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.PERMISSION_DENIED]
)
def test_anything_else_is_unavailable_and_says_nothing_of_inventory_internals(code: grpc.StatusCode) -> None:
    error = refusal(inventory_error(code, "WHATEVER", message="secret internals"))
    assert isinstance(error, Unavailable)
    assert "secret" not in error.message
