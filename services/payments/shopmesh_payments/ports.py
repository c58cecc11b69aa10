"""The payments domain's ports: what it needs from the orders service and from Stripe.

The domain depends on these protocols only; `orders_client` and `stripe_gateway`
implement them, and unit tests substitute fakes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Protocol

from shopmesh_payments.records import IntentState, OrderSnapshot, ProviderRefund, WebhookEvent


class ProviderDeclined(Exception):
    """Stripe refused the request for a reason of the request itself (a declined card, a bad parameter).

    Not a provider failure: retrying the same request would be refused again.
    """

    def __init__(self, code: str, message: str = "") -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code


class ProviderUnavailable(Exception):
    """Stripe could not be reached, answered 5xx or timed out, or the circuit breaker is open.

    `reached`: whether the request may have got to Stripe (False only when it certainly
    did not: the breaker refused it, or no connection could be made), so a create that
    did not reach Stripe is known to have created nothing.
    """

    def __init__(self, reason: str = "", *, reached: bool = True) -> None:
        super().__init__(reason)
        self.reached = reached


class InvalidWebhook(Exception):
    """A webhook whose signature, timestamp or body does not verify (or that does not parse after that)."""


class OrderLookup(Protocol):
    """Reads an order from the orders service (as the `payments` identity, no user token)."""

    async def get(self, order_id: str) -> OrderSnapshot | None:
        """The order, or None if it does not exist. Raises `shopmesh_platform.errors.Unavailable`."""
        ...


class PaymentProvider(Protocol):
    """Stripe, seen from the domain. Every method raises ProviderDeclined or ProviderUnavailable."""

    async def create_intent(
        self,
        *,
        amount_minor: int,
        currency: str,
        payment_method: str,
        metadata: Mapping[str, str],
        idempotency_key: str,
    ) -> IntentState:
        """Create an unconfirmed PaymentIntent."""
        ...

    async def confirm_intent(self, intent_id: str, *, idempotency_key: str) -> IntentState:
        """Confirm it: a declined card raises ProviderDeclined with Stripe's code."""
        ...

    async def retrieve_intent(self, intent_id: str) -> IntentState: ...

    async def find_intent_for_order(self, order_id: str, *, created_since: dt.datetime) -> IntentState | None:
        """The PaymentIntent whose metadata names the order, if Stripe has one created since `created_since`."""
        ...

    async def create_refund(
        self, *, intent_id: str, amount_minor: int, metadata: Mapping[str, str], idempotency_key: str
    ) -> ProviderRefund: ...

    async def find_refund(self, intent_id: str, refund_id: str) -> ProviderRefund | None:
        """The refund of the PaymentIntent whose metadata names our refund id, if any."""
        ...


class WebhookVerifier(Protocol):
    def verify(self, body: bytes, signature_header: str) -> WebhookEvent:
        """Check the signature and timestamp over the raw body, then parse; raises InvalidWebhook."""
        ...
