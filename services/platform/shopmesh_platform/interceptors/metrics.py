"""Prometheus RED metrics per method and status code, in a registry per server.

Names follow go-grpc-prometheus so existing dashboards work:
grpc_server_started_total, grpc_server_handled_total{grpc_code},
grpc_server_handling_seconds.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

from shopmesh_platform.interceptors.base import AroundInterceptor, CallInfo, NextCall, outcome_code, split_method

_LABELS = ("grpc_service", "grpc_method")


class MetricsInterceptor(AroundInterceptor):
    """Counts and times every call into the given registry; a stream when it ends."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._started = Counter("grpc_server_started_total", "RPCs started on the server.", _LABELS, registry=registry)
        self._handled = Counter(
            "grpc_server_handled_total",
            "RPCs completed on the server, by status code.",
            (*_LABELS, "grpc_code"),
            registry=registry,
        )
        self._latency = Histogram(
            "grpc_server_handling_seconds",
            "Time to handle an RPC, until the response or error is ready.",
            _LABELS,
            registry=registry,
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )

    async def around(self, call: CallInfo, proceed: NextCall) -> Any:
        service, method = split_method(call.method)
        self._started.labels(service, method).inc()
        started = time.perf_counter()
        error: BaseException | None = None
        try:
            return await proceed()
        except BaseException as exc:
            error = exc
            raise
        finally:
            self._latency.labels(service, method).observe(time.perf_counter() - started)
            self._handled.labels(service, method, outcome_code(call.context, error).name).inc()
