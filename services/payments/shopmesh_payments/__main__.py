"""Entry point: `python -m shopmesh_payments` (settings from the environment).

Beyond the platform's settings: Stripe's (SHOPMESH_STRIPE_API_BASE, _API_KEY,
_WEBHOOK_SECRET, ...) and the reconciler's; see shopmesh_payments.config.
"""

from __future__ import annotations

from collections.abc import Coroutine, Mapping, Sequence
from typing import Any

import asyncpg
from prometheus_client import CollectorRegistry

from shopmesh_payments.config import PaymentsConfig
from shopmesh_payments.domain import Payments
from shopmesh_payments.metrics import PaymentMetrics
from shopmesh_payments.orders_client import GrpcOrderLookup
from shopmesh_payments.reconciler import Reconciler
from shopmesh_payments.servicer import PaymentServicer, binding
from shopmesh_payments.stripe_gateway import StripeGateway
from shopmesh_payments.webhooks import StripeWebhooks
from shopmesh_platform.runner import BackgroundTask, ServiceRuntime, run_service, serve_with_postgres
from shopmesh_platform.server import ServiceBinding


class _Wiring:
    """Builds the service once the platform has its runtime and pool."""

    def __init__(self, config: PaymentsConfig) -> None:
        self._config = config
        self._metrics = PaymentMetrics()
        self._gateway = StripeGateway(config.stripe, self._metrics)
        self._payments: Payments | None = None

    def bindings(self, runtime: ServiceRuntime, pool: asyncpg.Pool) -> Sequence[ServiceBinding]:
        orders = GrpcOrderLookup(runtime.channel("orders"))
        self._payments = Payments(pool, orders, self._gateway, self._config.reconcile, self._metrics)
        webhooks = StripeWebhooks(self._payments, self._gateway, pool)
        return [binding(PaymentServicer(self._payments, webhooks))]

    def background(self, runtime: ServiceRuntime, pool: asyncpg.Pool) -> Sequence[BackgroundTask]:
        payments = self._payments
        assert payments is not None, "bindings are built first"

        def reconciler(registry: CollectorRegistry) -> Coroutine[Any, Any, None]:
            # The metrics port serves the server's registry, which exists only now.
            self._metrics.expose_on(registry)
            return Reconciler(payments, self._config.reconcile.interval_seconds).run()

        return [reconciler]


async def serve(env: Mapping[str, str]) -> None:
    wiring = _Wiring(PaymentsConfig.from_env(env))
    await serve_with_postgres("payments", env, wiring.bindings, background=wiring.background)


if __name__ == "__main__":
    run_service(serve)
