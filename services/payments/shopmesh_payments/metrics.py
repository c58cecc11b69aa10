"""The payments service's business metrics: payments by status, Stripe latency, breaker state.

They are created before the server (which owns the registry the metrics port
serves) exists, in a registry of their own; `expose_on` adds them to the
server's registry once it is built.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics_core import Metric

# The breaker gauge's values.
BREAKER_STATES = {"closed": 0, "half-opened": 1, "opened": 2}


class _Forward:
    """A collector that yields another registry's metrics (prometheus_client's custom collector protocol)."""

    def __init__(self, source: CollectorRegistry) -> None:
        self._source = source

    def collect(self) -> Iterator[Metric]:
        yield from self._source.collect()


class PaymentMetrics:
    def __init__(self) -> None:
        self._registry = CollectorRegistry()
        self.payments = Counter(
            "payments",
            "Payments reaching a status (PENDING when created, then each change).",
            ["status"],
            registry=self._registry,
        )
        self.provider_latency = Histogram(
            "payment_provider_request_seconds",
            "Latency of calls to Stripe, by operation and outcome (ok, declined, unavailable).",
            ["operation", "outcome"],
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
            registry=self._registry,
        )
        self.breaker_state = Gauge(
            "payment_provider_breaker_state",
            "The Stripe circuit breaker: 0 closed, 1 half-open, 2 open (calls fail fast).",
            registry=self._registry,
        )
        self.breaker_state.set(BREAKER_STATES["closed"])

    def count(self, status: str) -> None:
        self.payments.labels(status=status).inc()

    def set_breaker_state(self, state: str) -> None:
        self.breaker_state.set(BREAKER_STATES.get(state, BREAKER_STATES["opened"]))

    def expose_on(self, registry: CollectorRegistry) -> None:
        registry.register(_Forward(self._registry))
