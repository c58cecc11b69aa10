"""Entry point: `python -m shopmesh_payments` (settings from the environment).

Beyond the platform's settings: Stripe's (SHOPMESH_STRIPE_API_BASE, _API_KEY,
_WEBHOOK_SECRET, ...) and the reconciler's; see shopmesh_payments.config.
Beside the server run the reconciler (payments not final after a few seconds
are re-read from Stripe; paid payments of cancelled orders are refunded) and the
order-events consumer (shopmesh_payments.order_events: refunds of cancelled orders).
"""

from __future__ import annotations

from collections.abc import Mapping

from shopmesh_payments.config import PaymentsConfig
from shopmesh_payments.domain import Payments
from shopmesh_payments.metrics import PaymentMetrics
from shopmesh_payments.order_events import CONSUMER, order_event_handlers
from shopmesh_payments.orders_client import GrpcOrderLookup
from shopmesh_payments.reconciler import Reconciler
from shopmesh_payments.servicer import PaymentServicer, binding
from shopmesh_payments.stripe_gateway import StripeGateway
from shopmesh_payments.webhooks import StripeWebhooks
from shopmesh_platform.events.topics import ORDER_EVENTS
from shopmesh_platform.runner import run_service
from shopmesh_platform.runtime import Runtime


async def serve(env: Mapping[str, str]) -> None:
    config = PaymentsConfig.from_env(env)
    runtime = Runtime.from_env("payments", env)
    postgres = await runtime.postgres()
    metrics = PaymentMetrics()
    metrics.expose_on(runtime.registry)
    gateway = StripeGateway(config.stripe, metrics)
    orders = GrpcOrderLookup(runtime.channel("orders"))
    payments = Payments(postgres.pool, orders, gateway, config.reconcile, metrics)
    webhooks = StripeWebhooks(payments, gateway, postgres.pool)
    reconciler = Reconciler(payments, config.reconcile.interval_seconds)
    order_events = runtime.consumer(CONSUMER, order_event_handlers(payments), topics=[ORDER_EVENTS])
    await runtime.serve([binding(PaymentServicer(payments, webhooks))], consumers=[order_events], workers=[reconciler])


if __name__ == "__main__":
    run_service(serve)
