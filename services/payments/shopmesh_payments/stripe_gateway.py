"""Stripe through the official library (async client over httpx), behind a circuit breaker.

Implements the domain's PaymentProvider and WebhookVerifier. Stripe's errors are
sorted once: a request Stripe refuses for what it asks (a declined card, a bad
parameter) is ProviderDeclined and does not count against Stripe; a connection
error, a timeout, a 5xx, a 429 or an authentication failure is
ProviderUnavailable and counts. After `breaker_failures` consecutive failures
the breaker (purgatory) opens: calls fail at once with ProviderUnavailable for
`breaker_open_seconds`, then one probe goes through and closes it if it
succeeds. Its state is the `payment_provider_breaker_state` gauge.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import httpx
import stripe
from purgatory import AsyncCircuitBreakerFactory, ContextChanged
from purgatory.domain.messages.base import Event
from purgatory.domain.model import OpenedState

from shopmesh_payments.config import WEBHOOK_TOLERANCE_SECONDS, StripeConfig
from shopmesh_payments.metrics import PaymentMetrics
from shopmesh_payments.ports import InvalidWebhook, ProviderDeclined, ProviderUnavailable
from shopmesh_payments.records import IntentState, ProviderRefund, WebhookEvent
from shopmesh_payments.stripe_objects import intent_state, refund_state

T = TypeVar("T")
logger = logging.getLogger("shopmesh.payments.stripe")
CIRCUIT = "stripe"
# Pages of 100 searched for a PaymentIntent by its metadata (newest first on Stripe).
MAX_LIST_PAGES = 20
PAGE_SIZE = 100


# Raised by httpx before a request leaves: no connection was made (or none was free).
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


def classify(error: stripe.StripeError) -> ProviderDeclined | ProviderUnavailable:
    """A Stripe error as the domain sees it: refused request, or provider failure."""
    if isinstance(error, stripe.CardError | stripe.InvalidRequestError | stripe.IdempotencyError):
        return ProviderDeclined(error.code or "invalid_request", error.user_message or "")
    status = error.http_status
    if status is not None and 400 <= status < 500 and status not in (401, 403, 429):
        return ProviderDeclined(error.code or f"http_{status}", error.user_message or "")
    # The stripe library raises APIConnectionError from the HTTP client's own error.
    not_sent = isinstance(error, stripe.APIConnectionError) and isinstance(error.__cause__, NOT_SENT)
    return ProviderUnavailable(type(error).__name__, reached=not not_sent)


def _as_dict(value: Any) -> Mapping[str, Any]:
    return value.to_dict() if hasattr(value, "to_dict") else dict(value)


def _signature_timestamp(signature_header: str) -> int | None:
    """The `t=` of a Stripe-Signature header (e.g. `t=1700000000,v1=...`), if it is a number."""
    for item in signature_header.split(","):
        key, _, value = item.strip().partition("=")
        if key == "t" and value.isdigit():
            return int(value)
    return None


class StripeGateway:
    """PaymentProvider and WebhookVerifier on the stripe library."""

    def __init__(self, config: StripeConfig, metrics: PaymentMetrics) -> None:
        self._config = config
        self._metrics = metrics
        self._client = stripe.StripeClient(
            config.api_key,
            base_addresses={"api": config.api_base},
            http_client=stripe.HTTPXClient(timeout=config.timeout_seconds),
            # Retries are the reconciler's, with the same idempotency keys.
            max_network_retries=0,
        )
        self._breakers = AsyncCircuitBreakerFactory(
            default_threshold=config.breaker_failures,
            default_ttl=config.breaker_open_seconds,
            # A refused request says nothing about Stripe's health.
            exclude=[ProviderDeclined],
        )
        self._breakers.add_listener(self._on_breaker_event)

    def _on_breaker_event(self, name: str, kind: str, event: Event) -> None:
        if kind == "state_changed" and isinstance(event, ContextChanged):
            self._metrics.set_breaker_state(event.state)
            logger.warning("stripe circuit breaker changed state", extra={"state": event.state})

    async def _call(self, operation: str, call: Callable[[], Awaitable[T]]) -> T:
        started = time.monotonic()
        outcome = "unavailable"
        try:
            breaker = await self._breakers.get_breaker(CIRCUIT)
            async with breaker:
                try:
                    result = await call()
                except stripe.StripeError as error:
                    raise classify(error) from None
                except (OSError, TimeoutError) as error:
                    raise ProviderUnavailable(type(error).__name__) from None
            outcome = "ok"
            return result
        except OpenedState:
            raise ProviderUnavailable("circuit breaker open", reached=False) from None
        except ProviderDeclined:
            outcome = "declined"
            raise
        finally:
            self._metrics.provider_latency.labels(operation=operation, outcome=outcome).observe(
                time.monotonic() - started
            )

    async def create_intent(
        self,
        *,
        amount_minor: int,
        currency: str,
        payment_method: str,
        metadata: Mapping[str, str],
        idempotency_key: str,
    ) -> IntentState:
        params: dict[str, Any] = {
            "amount": amount_minor,
            "currency": currency.lower(),
            "payment_method": payment_method,
            "payment_method_types": ["card"],
            "metadata": dict(metadata),
        }
        created = await self._call(
            "create_intent",
            lambda: self._client.v1.payment_intents.create_async(
                params=params,  # type: ignore[arg-type]
                options={"idempotency_key": idempotency_key},
            ),
        )
        return intent_state(_as_dict(created))

    async def confirm_intent(self, intent_id: str, *, idempotency_key: str) -> IntentState:
        confirmed = await self._call(
            "confirm_intent",
            lambda: self._client.v1.payment_intents.confirm_async(
                intent_id, options={"idempotency_key": idempotency_key}
            ),
        )
        return intent_state(_as_dict(confirmed))

    async def retrieve_intent(self, intent_id: str) -> IntentState:
        found = await self._call("retrieve_intent", lambda: self._client.v1.payment_intents.retrieve_async(intent_id))
        return intent_state(_as_dict(found))

    async def find_intent_for_order(self, order_id: str, *, created_since: dt.datetime) -> IntentState | None:
        """List (newest first, created since) and filter by metadata: localstripe has no search, and
        Stripe's search lags behind writes."""
        starting_after: str | None = None
        for _ in range(MAX_LIST_PAGES):
            params: dict[str, Any] = {"limit": PAGE_SIZE, "created": {"gte": int(created_since.timestamp())}}
            if starting_after:
                params["starting_after"] = starting_after
            page = _as_dict(
                await self._call(
                    "list_intents",
                    lambda params=params: self._client.v1.payment_intents.list_async(params=params),  # type: ignore[misc]
                )
            )
            items = [item for item in page.get("data", []) if isinstance(item, Mapping)]
            for item in items:
                metadata = item.get("metadata")
                if isinstance(metadata, Mapping) and metadata.get("order_id") == order_id:
                    return intent_state(item)
            if not page.get("has_more") or not items:
                return None
            starting_after = str(items[-1].get("id"))
        return None

    async def create_refund(
        self, *, intent_id: str, amount_minor: int, metadata: Mapping[str, str], idempotency_key: str
    ) -> ProviderRefund:
        params: dict[str, Any] = {"payment_intent": intent_id, "amount": amount_minor, "metadata": dict(metadata)}
        created = await self._call(
            "create_refund",
            lambda: self._client.v1.refunds.create_async(
                params=params,  # type: ignore[arg-type]
                options={"idempotency_key": idempotency_key},
            ),
        )
        return refund_state(_as_dict(created))

    async def find_refund(self, intent_id: str, refund_id: str) -> ProviderRefund | None:
        page = _as_dict(
            await self._call(
                "list_refunds",
                lambda: self._client.v1.refunds.list_async(params={"payment_intent": intent_id, "limit": PAGE_SIZE}),
            )
        )
        for item in page.get("data", []):
            if isinstance(item, Mapping) and _as_dict(item.get("metadata") or {}).get("refund_id") == refund_id:
                return refund_state(item)
        return None

    def verify(self, body: bytes, signature_header: str) -> WebhookEvent:
        """Stripe's own check of the signature and timestamp over the raw body, before it is parsed."""
        try:
            # stripe.Webhook.construct_event, bound to this client instead of the library's globals.
            event = self._client.construct_event(
                body, signature_header, self._config.webhook_secret, tolerance=WEBHOOK_TOLERANCE_SECONDS
            )
        except (stripe.SignatureVerificationError, ValueError) as error:
            raise InvalidWebhook(type(error).__name__) from None
        # The library refuses only old timestamps; a tolerance holds both ways, so a signature
        # made for the future cannot be replayed for longer than the window either.
        signed_at = _signature_timestamp(signature_header)
        if signed_at is None or signed_at > time.time() + WEBHOOK_TOLERANCE_SECONDS:
            raise InvalidWebhook("timestamp outside the tolerance")
        raw = _as_dict(event)
        data = raw.get("data")
        data_object = data.get("object") if isinstance(data, Mapping) else None
        if not raw.get("id") or not raw.get("type") or not isinstance(data_object, Mapping):
            raise InvalidWebhook("not a Stripe event")
        return WebhookEvent(id=str(raw["id"]), type=str(raw["type"]), data_object=dict(data_object))
