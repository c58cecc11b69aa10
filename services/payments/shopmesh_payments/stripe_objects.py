"""Stripe's JSON objects (PaymentIntent, Refund, Charge) read into domain records.

Pure functions over parsed JSON, shared by the API client (stripe_gateway) and the
webhook handler, so both routes read a PaymentIntent the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shopmesh_payments.records import IntentState, IntentStatus, ProviderRefund

_STATUSES = {
    "requires_confirmation": IntentStatus.REQUIRES_CONFIRMATION,
    "requires_action": IntentStatus.REQUIRES_ACTION,
    "processing": IntentStatus.PROCESSING,
    "succeeded": IntentStatus.SUCCEEDED,
    "canceled": IntentStatus.CANCELED,
}
DECLINED_WITHOUT_CODE = "payment_failed"


def _metadata(raw: Any) -> dict[str, str]:
    if not isinstance(raw, Mapping):
        return {}
    return {str(key): str(value) for key, value in raw.items()}


def _int(raw: Any) -> int:
    return int(raw) if isinstance(raw, int | float | str) and str(raw).lstrip("-").isdigit() else 0


def _fee(intent: Mapping[str, Any]) -> int | None:
    """The fee of the latest charge, when its balance transaction was expanded."""
    charge = intent.get("latest_charge")
    if not isinstance(charge, Mapping):
        return None
    transaction = charge.get("balance_transaction")
    if isinstance(transaction, Mapping) and isinstance(transaction.get("fee"), int):
        return int(transaction["fee"])
    return None


def intent_state(intent: Mapping[str, Any]) -> IntentState:
    """A PaymentIntent object as the domain sees it.

    Stripe reports a declined attempt as `requires_payment_method` with a
    `last_payment_error`: that is a failure (its code, e.g. card_declined).
    """
    raw_status = str(intent.get("status", ""))
    error = intent.get("last_payment_error")
    failure_code = None
    if raw_status == "requires_payment_method" and isinstance(error, Mapping):
        status = IntentStatus.FAILED
        failure_code = str(error.get("code") or error.get("decline_code") or DECLINED_WITHOUT_CODE)
    else:
        status = _STATUSES.get(raw_status, IntentStatus.OTHER)
    return IntentState(
        id=str(intent.get("id", "")),
        status=status,
        amount_minor=_int(intent.get("amount")),
        currency=str(intent.get("currency", "")).upper(),
        metadata=_metadata(intent.get("metadata")),
        client_secret=str(intent["client_secret"]) if intent.get("client_secret") else None,
        failure_code=failure_code,
        fee_minor=_fee(intent),
    )


def refund_state(refund: Mapping[str, Any]) -> ProviderRefund:
    return ProviderRefund(
        id=str(refund.get("id", "")),
        amount_minor=_int(refund.get("amount")),
        status=str(refund.get("status", "")),
        metadata=_metadata(refund.get("metadata")),
    )


def charge_refunds(charge: Mapping[str, Any]) -> list[ProviderRefund] | None:
    """The refunds a Charge object lists, or None when it does not include them
    (recent Stripe API versions leave `refunds` out unless expanded)."""
    refunds = charge.get("refunds")
    if not isinstance(refunds, Mapping) or not isinstance(refunds.get("data"), list):
        return None
    return [refund_state(item) for item in refunds["data"] if isinstance(item, Mapping)]
