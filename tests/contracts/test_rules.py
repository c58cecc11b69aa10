"""The input rules in the contracts, checked with protovalidate on real messages."""

from __future__ import annotations

import math

import protovalidate
import pytest
from google.protobuf.message import Message

from shopmesh.order.v1 import order_service_pb2 as order_pb2
from shopmesh.payment.v1 import payment_service_pb2 as payment_pb2
from shopmesh.user.v1 import user_service_pb2 as user_pb2


def rule_ids(message: Message) -> set[tuple[str, str]]:
    from shopmesh_platform.interceptors.validation import field_path

    return {(field_path(v), v.proto.rule_id) for v in protovalidate.collect_violations(message)}


def payment(amount: float, currency: str = "USD") -> payment_pb2.CreatePaymentRequest:
    return payment_pb2.CreatePaymentRequest(
        order_id="0b8e8a52-1a5f-4d8e-9a49-5d0c8f3f7e21",
        amount=amount,
        currency=currency,
        payment_method_id="pm_card_visa",
    )


@pytest.mark.parametrize("amount", [0.0, 0.01, 29.99, 1234.5, 999999999.99])
def test_money_with_two_decimals_is_accepted(amount: float) -> None:
    assert rule_ids(payment(amount)) == set()


@pytest.mark.parametrize("amount", [29.995, 0.001, -1.0, math.nan, math.inf, 2e9])
def test_money_rule_rejects_bad_amounts(amount: float) -> None:
    assert ("amount", "double.major_units") in rule_ids(payment(amount))


@pytest.mark.parametrize(("currency", "ok"), [("USD", True), ("usd", True), ("US", False), ("UsD", False), ("", False)])
def test_currency_code(currency: str, ok: bool) -> None:
    assert (rule_ids(payment(10.0, currency)) == set()) is ok


def test_register_rules_name_each_field() -> None:
    ids = rule_ids(user_pb2.RegisterUserRequest(email="not-an-email", password="short", first_name="", last_name="L"))
    assert ids == {("email", "string.email"), ("password", "string.min_len"), ("first_name", "string.min_len")}


def test_order_rules_reach_nested_fields() -> None:
    request = order_pb2.CreateOrderRequest(
        user_id="not-a-uuid",
        items=[order_pb2.OrderItemInput(product_id="prod-1", quantity=0, price=1.0)],
        request_id="",
    )
    assert rule_ids(request) == {
        ("user_id", "string.uuid"),
        ("items[0].quantity", "int32.gte_lte"),
        ("shipping_address", "required"),
    }
