"""The input rules in the contracts, checked with protovalidate on real messages."""

from __future__ import annotations

import math
import re
from pathlib import Path

import protovalidate
import pytest
from google.protobuf.message import Message

from shopmesh.order.v1 import order_service_pb2 as order_pb2
from shopmesh.payment.v1 import payment_service_pb2 as payment_pb2
from shopmesh.user.v1 import user_service_pb2 as user_pb2

REPO = Path(__file__).resolve().parents[2]


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


def users_table_email_check() -> re.Pattern[str]:
    """The regular expression of the users table's email check, read from its migration."""
    migration = (REPO / "migrations" / "users" / "0001_users.sql").read_text()
    match = re.search(r"CONSTRAINT users_email_format CHECK \(.*email ~ '([^']+)'\)", migration)
    assert match is not None, "the users_email_format check moved"
    return re.compile(match.group(1))


@pytest.mark.parametrize(
    "email",
    [
        "ada@example.com",
        "ADA@Example.COM",
        "a.b+c@sub.example.co.uk",
        "ada@127.0.0.1",
        "x@y.z",
        "ada@localhost",
        "ada@example",
        "ada@example.com.",
        "ada@.example.com",
        "not-an-email",
        "ada@@example.com",
    ],
)
def test_every_email_the_contract_accepts_the_users_table_stores(email: str) -> None:
    request = user_pb2.RegisterUserRequest(email=email, password="long enough", first_name="A", last_name="L")
    contract_accepts = not {rule for field, rule in rule_ids(request) if field == "email"}
    stored = email.strip().lower()  # what the service writes
    assert not contract_accepts or users_table_email_check().fullmatch(stored) is not None


def test_a_domain_without_a_dot_is_refused_by_the_contract() -> None:
    request = user_pb2.RegisterUserRequest(email="ada@localhost", password="long enough", first_name="A", last_name="L")
    assert rule_ids(request) == {("email", "string.account_email")}
