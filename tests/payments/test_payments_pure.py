"""Payments logic that needs no infrastructure: Stripe objects, error sorting, the
breaker opening on a dead endpoint, webhook verification, config, the status mirror."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
import socket
import time

import httpx
import pytest
import stripe
from prometheus_client import CollectorRegistry, generate_latest

from shopmesh.payment.v1 import payment_service_pb2 as pb
from shopmesh_payments.config import PaymentsConfig, StripeConfig
from shopmesh_payments.domain import intent_mismatches
from shopmesh_payments.metrics import PaymentMetrics
from shopmesh_payments.orders_client import minor_units
from shopmesh_payments.ports import InvalidWebhook, ProviderDeclined, ProviderUnavailable
from shopmesh_payments.records import IntentStatus, PaymentRecord, PaymentStatus
from shopmesh_payments.stripe_gateway import StripeGateway, classify
from shopmesh_payments.stripe_objects import charge_refunds, intent_state
from shopmesh_payments.webhooks import StripeWebhooks
from shopmesh_platform.config import ConfigError
from shopmesh_platform.errors import InvalidArgument
from shopmesh_platform.migrations import MIGRATIONS_ROOT

SECRET = "whsec_unit"


def _config(api_base: str = "http://127.0.0.1:9", failures: int = 5, open_seconds: float = 30.0) -> StripeConfig:
    return StripeConfig(
        api_base=api_base,
        api_key="sk_test_unit",
        webhook_secret=SECRET,
        timeout_seconds=2.0,
        breaker_failures=failures,
        breaker_open_seconds=open_seconds,
    )


def test_intent_states_from_stripe_objects() -> None:
    succeeded = intent_state(
        {"id": "pi_1", "status": "succeeded", "amount": 5998, "currency": "usd", "metadata": {"order_id": "o"}}
    )
    assert (succeeded.status, succeeded.amount_minor, succeeded.currency) == (IntentStatus.SUCCEEDED, 5998, "USD")
    assert succeeded.metadata == {"order_id": "o"}
    declined = intent_state(
        {"id": "pi_2", "status": "requires_payment_method", "last_payment_error": {"code": "card_declined"}}
    )
    assert (declined.status, declined.failure_code) == (IntentStatus.FAILED, "card_declined")
    action = intent_state({"id": "pi_3", "status": "requires_action", "client_secret": "pi_3_secret_x"})
    assert (action.status, action.client_secret) == (IntentStatus.REQUIRES_ACTION, "pi_3_secret_x")
    assert intent_state({"id": "pi_4", "status": "requires_payment_method"}).status is IntentStatus.OTHER
    assert charge_refunds({"id": "ch_1"}) is None
    listed = charge_refunds({"refunds": {"data": [{"id": "re_1", "amount": 100, "status": "succeeded"}]}})
    assert listed is not None and [(r.id, r.amount_minor) for r in listed] == [("re_1", 100)]


def test_an_intent_is_applied_only_to_the_payment_it_describes() -> None:
    now = dt.datetime.now(dt.UTC)
    payment = PaymentRecord(
        id="p", order_id="o-1", user_id="u", amount_minor=5998, currency="USD",
        status=PaymentStatus.PENDING, payment_method="pm_card_visa", created_at=now, updated_at=now,
    )  # fmt: skip
    own = {"id": "pi_1", "status": "succeeded", "amount": 5998, "currency": "usd", "metadata": {"order_id": "o-1"}}
    assert intent_mismatches(payment, intent_state(own)) == []
    assert intent_mismatches(payment, intent_state({**own, "metadata": {}})) == []
    assert intent_mismatches(payment, intent_state({**own, "amount": 1})) == ["amount"]
    assert intent_mismatches(payment, intent_state({**own, "amount": "5998.5"})) == ["amount"]
    assert intent_mismatches(payment, intent_state({**own, "currency": "eur"})) == ["currency"]
    assert intent_mismatches(payment, intent_state({**own, "metadata": {"order_id": "o-2"}})) == ["order_id"]


def test_stripe_errors_are_sorted_into_refusals_and_failures() -> None:
    declined = classify(stripe.CardError("Your card was declined.", None, "card_declined", http_status=402))
    assert isinstance(declined, ProviderDeclined) and declined.code == "card_declined"
    invalid = classify(stripe.InvalidRequestError("No such payment_method", "payment_method", "resource_missing"))
    assert isinstance(invalid, ProviderDeclined) and invalid.code == "resource_missing"
    for failure in (
        stripe.APIConnectionError("connection refused"),
        stripe.APIError("server error", http_status=500),
        stripe.RateLimitError("slow down", http_status=429),
        stripe.AuthenticationError("bad key", http_status=401),
    ):
        assert isinstance(classify(failure), ProviderUnavailable), failure


def _raised_from(error: stripe.StripeError, cause: BaseException) -> stripe.StripeError:
    error.__cause__ = cause
    return error


def test_a_failure_says_whether_the_request_may_have_reached_stripe() -> None:
    request = httpx.Request("POST", "http://127.0.0.1/v1/payment_intents")
    for cause in (httpx.ConnectError("refused", request=request), httpx.ConnectTimeout("slow", request=request)):
        unsent = classify(_raised_from(stripe.APIConnectionError("no connection"), cause))
        assert isinstance(unsent, ProviderUnavailable) and unsent.reached is False, cause
    for maybe in (
        _raised_from(stripe.APIConnectionError("no answer"), httpx.ReadTimeout("slow", request=request)),
        _raised_from(stripe.APIConnectionError("cut"), httpx.RemoteProtocolError("closed", request=request)),
        stripe.APIConnectionError("unknown cause"),
        stripe.APIError("server error", http_status=500),
    ):
        reached = classify(maybe)
        assert isinstance(reached, ProviderUnavailable) and reached.reached is True, maybe


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_breaker_opens_after_repeated_failures_and_fails_fast() -> None:
    metrics = PaymentMetrics()
    registry = CollectorRegistry()
    metrics.expose_on(registry)
    gateway = StripeGateway(_config(f"http://127.0.0.1:{_closed_port()}", failures=3, open_seconds=60), metrics)
    for _ in range(3):
        with pytest.raises(ProviderUnavailable) as failed:
            await gateway.retrieve_intent("pi_missing")
        assert "breaker" not in str(failed.value)
        assert failed.value.reached is False  # nothing listens: the connection was refused
    assert "payment_provider_breaker_state 2.0" in generate_latest(registry).decode()
    started = time.monotonic()
    with pytest.raises(ProviderUnavailable, match="circuit breaker open") as refused:
        await gateway.retrieve_intent("pi_missing")
    assert time.monotonic() - started < 0.5
    assert refused.value.reached is False
    exposition = generate_latest(registry).decode()
    assert 'payment_provider_request_seconds_count{operation="retrieve_intent",outcome="unavailable"} 4.0' in exposition


async def test_half_open_probe_that_fails_opens_again() -> None:
    metrics = PaymentMetrics()
    registry = CollectorRegistry()
    metrics.expose_on(registry)
    gateway = StripeGateway(_config(f"http://127.0.0.1:{_closed_port()}", failures=1, open_seconds=0.2), metrics)
    with pytest.raises(ProviderUnavailable):
        await gateway.retrieve_intent("pi_missing")
    with pytest.raises(ProviderUnavailable, match="circuit breaker open"):
        await gateway.retrieve_intent("pi_missing")
    await asyncio.sleep(0.3)  # the open period is the behaviour under test, not synchronisation
    with pytest.raises(ProviderUnavailable) as probe:
        await gateway.retrieve_intent("pi_missing")
    assert "breaker" not in str(probe.value)  # the probe went through
    with pytest.raises(ProviderUnavailable, match="circuit breaker open"):
        await gateway.retrieve_intent("pi_missing")


def _signed(payload: str, secret: str = SECRET, timestamp: int | None = None) -> str:
    return stripe.WebhookSignature.generate_signature_header(payload, secret, timestamp=timestamp)


def test_webhook_verification_over_the_raw_body() -> None:
    gateway = StripeGateway(_config(), PaymentMetrics())
    payload = json.dumps(
        {"id": "evt_1", "object": "event", "type": "payment_intent.succeeded", "data": {"object": {"id": "pi_1"}}}
    )
    event = gateway.verify(payload.encode(), _signed(payload))
    assert (event.id, event.type, event.data_object["id"]) == ("evt_1", "payment_intent.succeeded", "pi_1")
    for body, header in (
        (payload, _signed(payload, secret="whsec_other")),
        (payload, _signed(payload, timestamp=int(time.time()) - 301)),
        (payload, _signed(payload, timestamp=int(time.time()) + 301)),
        (payload.replace("pi_1", "pi_2"), _signed(payload)),
        (payload, "t=1,v0=abc"),
    ):
        with pytest.raises(InvalidWebhook):
            gateway.verify(body.encode(), header)
    with pytest.raises(InvalidWebhook):
        gateway.verify(b"\xff\xfe", _signed("x"))


async def test_webhook_without_signature_is_refused_before_anything_else() -> None:
    gateway = StripeGateway(_config(), PaymentMetrics())
    webhooks = StripeWebhooks(payments=None, verifier=gateway, pool=None)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument) as missing:
        await webhooks.handle(b"{}", None)
    assert missing.value.reason == "WEBHOOK_SIGNATURE_MISSING"
    with pytest.raises(InvalidArgument) as invalid:
        await webhooks.handle(b"{}", _signed("{ }"))
    assert invalid.value.reason == "WEBHOOK_SIGNATURE_INVALID"


def test_config_names_the_missing_variable() -> None:
    with pytest.raises(ConfigError, match="SHOPMESH_STRIPE_API_KEY"):
        PaymentsConfig.from_env({"SHOPMESH_STRIPE_WEBHOOK_SECRET": "whsec_x"})
    with pytest.raises(ConfigError, match="SHOPMESH_STRIPE_WEBHOOK_SECRET"):
        PaymentsConfig.from_env({"SHOPMESH_STRIPE_API_KEY": "sk_test_x"})
    config = PaymentsConfig.from_env(
        {"SHOPMESH_STRIPE_API_KEY": "sk_test_x", "SHOPMESH_STRIPE_WEBHOOK_SECRET": "whsec_x"}
    )
    assert config.stripe.api_base == "https://api.stripe.com" and config.stripe.breaker_failures == 5


def test_database_statuses_mirror_the_contract() -> None:
    sql = (MIGRATIONS_ROOT / "payments" / "0001_payments.sql").read_text()
    check = re.search(r"status IN \(([^)]*)\)", sql[sql.index("payments_status_known") :])
    assert check is not None
    stored = {value.strip().strip("'") for value in check.group(1).split(",")}
    names = pb.PaymentStatus.DESCRIPTOR.values_by_name
    contract = {name.removeprefix("PAYMENT_STATUS_") for name in names} - {"UNSPECIFIED"}
    assert stored == contract == {status.value for status in PaymentStatus}


def test_major_units_convert_exactly() -> None:
    assert [minor_units(v) for v in (59.98, 0.1 + 0.2, 29.99, 1000000000.0)] == [5998, 30, 2999, 100000000000]
