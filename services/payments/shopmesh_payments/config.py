"""The payments service's own settings, read once from the environment.

SHOPMESH_STRIPE_API_BASE      Stripe's API (locally: localstripe); default https://api.stripe.com
SHOPMESH_STRIPE_API_KEY       the secret key (sk_...); required
SHOPMESH_STRIPE_WEBHOOK_SECRET  the webhook signing secret (whsec_...); required
SHOPMESH_STRIPE_TIMEOUT_SECONDS  per Stripe call (default 10)
SHOPMESH_STRIPE_BREAKER_FAILURES  consecutive provider failures that open the breaker (default 5)
SHOPMESH_STRIPE_BREAKER_OPEN_SECONDS  how long it stays open before a probe (default 15)
SHOPMESH_PAYMENTS_LEASE_SECONDS   how long one caller may drive a payment with Stripe (default 60)
SHOPMESH_PAYMENTS_RECONCILE_AFTER_SECONDS  an unsettled payment is re-read after this (default 5)
SHOPMESH_PAYMENTS_RECONCILE_INTERVAL_SECONDS  how often the reconciler looks (default 2)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from shopmesh_platform.config import ConfigError, EnvReader

# Stripe verifies webhook timestamps within 5 minutes; so do we.
WEBHOOK_TOLERANCE_SECONDS = 300


@dataclass(frozen=True)
class StripeConfig:
    api_base: str
    api_key: str
    webhook_secret: str
    timeout_seconds: float
    breaker_failures: int
    breaker_open_seconds: float


@dataclass(frozen=True)
class ReconcileConfig:
    lease_seconds: float
    reconcile_after_seconds: float
    interval_seconds: float


@dataclass(frozen=True)
class PaymentsConfig:
    stripe: StripeConfig
    reconcile: ReconcileConfig

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> PaymentsConfig:
        read = EnvReader(env)

        def required(name: str, prefix: str) -> str:
            value = read.optional(name)
            if value is None or not value.startswith(prefix):
                raise ConfigError(f"{name} must be set to a Stripe key starting with {prefix!r}")
            return value

        api_base = read.string("SHOPMESH_STRIPE_API_BASE", "https://api.stripe.com").rstrip("/")
        if not api_base.startswith(("http://", "https://")):
            raise ConfigError(f"SHOPMESH_STRIPE_API_BASE={api_base!r} must be an http(s) URL")
        return cls(
            stripe=StripeConfig(
                api_base=api_base,
                api_key=required("SHOPMESH_STRIPE_API_KEY", "sk_"),
                webhook_secret=required("SHOPMESH_STRIPE_WEBHOOK_SECRET", "whsec_"),
                timeout_seconds=read.number("SHOPMESH_STRIPE_TIMEOUT_SECONDS", 10.0, minimum=0.1, maximum=120.0),
                breaker_failures=read.integer("SHOPMESH_STRIPE_BREAKER_FAILURES", 5, minimum=1, maximum=1000),
                breaker_open_seconds=read.number(
                    "SHOPMESH_STRIPE_BREAKER_OPEN_SECONDS", 15.0, minimum=0.1, maximum=3600.0
                ),
            ),
            reconcile=ReconcileConfig(
                lease_seconds=read.number("SHOPMESH_PAYMENTS_LEASE_SECONDS", 60.0, minimum=1.0, maximum=3600.0),
                reconcile_after_seconds=read.number(
                    "SHOPMESH_PAYMENTS_RECONCILE_AFTER_SECONDS", 5.0, minimum=0.1, maximum=3600.0
                ),
                interval_seconds=read.number(
                    "SHOPMESH_PAYMENTS_RECONCILE_INTERVAL_SECONDS", 2.0, minimum=0.05, maximum=3600.0
                ),
            ),
        )
