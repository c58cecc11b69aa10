"""Prometheus RED metrics per method and status code, in a registry per server.

Names follow go-grpc-prometheus so existing dashboards work:
grpc_server_started_total, grpc_server_handled_total{grpc_code},
grpc_server_handling_seconds. Each method's labelled children are looked up
once and kept, so a call costs two increments and an observation, not three
label look-ups (each takes a lock and validates the labels).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import grpc
from prometheus_client import CollectorRegistry, Counter, Histogram

from shopmesh_platform.interceptors.base import AroundInterceptor, CallInfo, NextCall, outcome_code, split_method

_LABELS = ("grpc_service", "grpc_method")


@dataclass
class _MethodMetrics:
    """One method's children of the three metrics; `handled` filled per status code on first use."""

    started: Any
    latency: Any
    handled_by_code: dict[grpc.StatusCode, Any] = field(default_factory=dict)


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
        # Bounded by the methods the server serves: only routed calls reach an interceptor.
        self._methods: dict[str, _MethodMetrics] = {}

    def _for(self, method: str) -> _MethodMetrics:
        found = self._methods.get(method)
        if found is None:
            service, name = split_method(method)
            found = _MethodMetrics(self._started.labels(service, name), self._latency.labels(service, name))
            self._methods[method] = found
        return found

    def _handled_child(self, method: str, metrics: _MethodMetrics, code: grpc.StatusCode) -> Any:
        child = metrics.handled_by_code.get(code)
        if child is None:
            service, name = split_method(method)
            child = metrics.handled_by_code[code] = self._handled.labels(service, name, code.name)
        return child

    async def around(self, call: CallInfo, proceed: NextCall) -> Any:
        metrics = self._for(call.method)
        metrics.started.inc()
        started = time.perf_counter()
        error: BaseException | None = None
        try:
            return await proceed()
        except BaseException as exc:
            error = exc
            raise
        finally:
            metrics.latency.observe(time.perf_counter() - started)
            self._handled_child(call.method, metrics, outcome_code(call.context, error)).inc()
