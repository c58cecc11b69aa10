"""Server interceptors, one cross-cutting concern per module.

`default_chain` returns them in the order the platform runs them, outermost
first: request id -> tracing -> access log -> metrics -> status mapping -> deadline
-> auth -> validation. Deadline, auth and validation raise DomainErrors, so they sit
inside the status mapping; metrics and the access log sit outside it to see final
codes; the deadline's budget covers authorisation (it may ask a database) and the handler.
"""

from __future__ import annotations

from grpc import aio
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry

from shopmesh_platform.interceptors.access_log import AccessLogInterceptor
from shopmesh_platform.interceptors.auth import AuthInterceptor
from shopmesh_platform.interceptors.deadline import DeadlineInterceptor
from shopmesh_platform.interceptors.metrics import MetricsInterceptor
from shopmesh_platform.interceptors.request_id import RequestIdInterceptor
from shopmesh_platform.interceptors.status import StatusInterceptor
from shopmesh_platform.interceptors.tracing import tracing_interceptor
from shopmesh_platform.interceptors.validation import ValidationInterceptor
from shopmesh_platform.mesh import MeshDeclaration


def default_chain(
    *,
    auth: AuthInterceptor,
    mesh: MeshDeclaration,
    registry: CollectorRegistry,
    tracer_provider: TracerProvider,
    exporting: bool = True,
) -> list[aio.ServerInterceptor]:
    """The chain; `exporting` says whether spans go anywhere (an OTLP endpoint is configured)."""
    return [
        RequestIdInterceptor(),
        tracing_interceptor(tracer_provider, exporting=exporting),
        AccessLogInterceptor(),
        MetricsInterceptor(registry),
        StatusInterceptor(),
        DeadlineInterceptor(mesh),
        auth,
        ValidationInterceptor(),
    ]
