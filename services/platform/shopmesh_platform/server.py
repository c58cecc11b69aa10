"""`create_server`: a grpc.aio server with everything a shopmesh service needs.

It serves the given servicers plus grpc.health.v1 and server reflection, runs
the interceptor chain, exposes Prometheus metrics on their own HTTP port, and
applies keepalive and message-size limits. Health reflects what the service
needs to answer calls, as reported by its readiness probe (its database, never
Kafka); it is NOT_SERVING while draining. SIGTERM or SIGINT drains: health goes
NOT_SERVING, then `server.stop(grace)` lets in-flight calls finish, then
`serve()` returns and the process exits 0.

With `reuse_port` (SHOPMESH_REUSE_PORT=on) the gRPC and metrics ports are bound
with SO_REUSEPORT: a replacement started on the same ports shares them (the
kernel spreads new connections over both) until this process has drained and
closed its listeners. Its `probe_port` serves the metrics (`health_serving`,
`revocations_loaded`) of that one process while the others are shared.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from google.protobuf.descriptor import ServiceDescriptor
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection
from prometheus_client import CollectorRegistry, Gauge

from shopmesh_platform import transport
from shopmesh_platform.config import PlatformConfig, TransportSecurity
from shopmesh_platform.interceptors import default_chain
from shopmesh_platform.interceptors.auth import AuthInterceptor, UserTokenVerifier
from shopmesh_platform.interceptors.fused import fused
from shopmesh_platform.metrics_http import MetricsEndpoint
from shopmesh_platform.traces import Tracing

LIVENESS_SERVICE = "shopmesh.liveness"
"""The health service name a liveness probe asks for (Kubernetes gRPC probes)."""
logger = logging.getLogger("shopmesh.server")

ReadinessProbe = Callable[[], Awaitable[bool]]
# Builds the interceptor chain (see interceptors.default_chain, which every service uses;
# the benchmark harness passes its own to measure the chain with one interceptor removed).
ChainFactory = Callable[..., list[aio.ServerInterceptor]]
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


async def always_ready() -> bool:
    """Probe for services that depend on nothing but themselves."""
    return True


@dataclass(frozen=True)
class ServiceBinding:
    """A servicer and how to attach it: `add_XServicer_to_server` and its descriptor."""

    descriptor: ServiceDescriptor
    servicer: Any
    register: Callable[[Any, aio.Server], None]

    @classmethod
    def of(cls, servicer: Any, pb2_module: Any, pb2_grpc_module: Any, service: str) -> ServiceBinding:
        """Bind `servicer` as `service` of a generated `_pb2` / `_pb2_grpc` module pair."""
        return cls(
            descriptor=pb2_module.DESCRIPTOR.services_by_name[service],
            servicer=servicer,
            register=getattr(pb2_grpc_module, f"add_{service}Servicer_to_server"),
        )


class ShopmeshServer:
    """A running (or ready to run) service; see the module docstring."""

    def __init__(
        self,
        config: PlatformConfig,
        services: Sequence[ServiceBinding],
        *,
        readiness: ReadinessProbe,
        user_tokens: UserTokenVerifier | None,
        registry: CollectorRegistry | None = None,
        interceptors: ChainFactory = default_chain,
        tracing: Tracing | None = None,
    ) -> None:
        self.config = config
        self.registry = registry if registry is not None else CollectorRegistry()
        self._services = list(services)
        self._readiness = readiness
        self._health = health_aio.HealthServicer()
        self._draining = False
        self._probe_task: asyncio.Task[None] | None = None
        self._metrics_endpoints: list[MetricsEndpoint] = []
        self._serving = Gauge(
            "health_serving", "1 while this process's overall health is SERVING", registry=self.registry
        )
        self._stopped = asyncio.Event()
        # A Runtime passes the process's Tracing and shuts it down itself, after its consumers and relays.
        self._owns_tracing = tracing is None
        self.tracing = tracing or Tracing.for_service(config.service_name, config.otlp_endpoint)
        limits = config.limits
        # The chain's AroundInterceptors run as one grpc interceptor, planned once per method.
        interceptors = fused(interceptors)
        self._server = aio.server(
            interceptors=interceptors(
                auth=AuthInterceptor(
                    config.mesh,
                    user_tokens=user_tokens,
                    peer_identity=transport.peer_identity_resolver(config),
                    identities_enforced=config.transport is TransportSecurity.ON,
                ),
                mesh=config.mesh,
                registry=self.registry,
                tracer_provider=self.tracing.provider,
                exporting=self.tracing.exporting,
            ),
            options=[
                ("grpc.max_receive_message_length", limits.max_message_bytes),
                ("grpc.max_send_message_length", limits.max_message_bytes),
                ("grpc.keepalive_time_ms", limits.keepalive_time_ms),
                ("grpc.keepalive_timeout_ms", limits.keepalive_timeout_ms),
                ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
                ("grpc.max_concurrent_streams", limits.max_concurrent_streams),
                # Explicit either way: gRPC's own default on Linux is on, which would let a second
                # process (a stale one, another stack) share the port without an error.
                ("grpc.so_reuseport", 1 if config.reuse_port else 0),
            ],
        )
        for binding in self._services:
            binding.register(binding.servicer, self._server)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
        reflection.enable_server_reflection(
            [b.descriptor.full_name for b in self._services]
            + [health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME],
            self._server,
        )
        self.grpc_port = transport.bind(self._server, config, f"{config.bind_host}:{config.grpc_port}")
        self.metrics_port = 0
        self.probe_port: int | None = None

    @property
    def service_names(self) -> list[str]:
        return [b.descriptor.full_name for b in self._services]

    async def start(self) -> None:
        """Start serving, the metrics endpoint and the readiness probe loop."""
        host, reuse = self.config.bind_host, self.config.reuse_port
        shared = MetricsEndpoint(host, self.config.metrics_port, self.registry, reuse_port=reuse)
        self._metrics_endpoints.append(shared)
        self.metrics_port = shared.port
        if self.config.probe_port is not None:
            own = MetricsEndpoint(host, self.config.probe_port, self.registry, reuse_port=False)
            self._metrics_endpoints.append(own)
            self.probe_port = own.port
        await self._server.start()
        # Liveness: SERVING for as long as the process answers, whatever its database
        # says (a database outage must make a pod unready, not restart it).
        await self._health.set(LIVENESS_SERVICE, SERVING)
        await self._apply_readiness()
        self._probe_task = asyncio.create_task(self._probe_loop(), name="health-probe")
        logger.info(
            "serving",
            extra={"grpc_port": self.grpc_port, "metrics_port": self.metrics_port, "services": self.service_names},
        )

    async def _set_all(self, status: health_pb2.HealthCheckResponse.ServingStatus.ValueType) -> None:
        for name in ("", *self.service_names):
            await self._health.set(name, status)
        self._serving.set(1 if status == SERVING else 0)

    async def _apply_readiness(self) -> None:
        if self._draining:
            return
        try:
            ready = await asyncio.wait_for(self._readiness(), timeout=self.config.health_probe_interval_seconds * 5)
        except Exception:
            logger.warning("readiness probe failed", exc_info=True)
            ready = False
        if not self._draining:
            await self._set_all(SERVING if ready else NOT_SERVING)

    async def _probe_loop(self) -> None:
        while not self._draining:
            await asyncio.sleep(self.config.health_probe_interval_seconds)
            await self._apply_readiness()

    async def drain(self) -> None:
        """Health NOT_SERVING, wait the drain delay, then stop with the grace period."""
        if self._draining:
            return
        await self.stop_taking_calls()
        await self.stop()

    async def stop_taking_calls(self) -> None:
        """First drain phase: health NOT_SERVING for good, then the drain delay."""
        if self._draining:
            return
        self._draining = True
        logger.info("draining", extra={"grace_seconds": self.config.drain_grace_seconds})
        await self._set_all(NOT_SERVING)
        if self._probe_task is not None:
            self._probe_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe_task
        if self.config.drain_delay_seconds:
            # Gives load balancers watching health time to stop sending new calls.
            await asyncio.sleep(self.config.drain_delay_seconds)

    async def stop(self) -> None:
        """Second drain phase: in-flight calls finish within the grace period, then everything stops."""
        await self._server.stop(self.config.drain_grace_seconds)
        for endpoint in self._metrics_endpoints:
            endpoint.close()
        if self._owns_tracing:
            await asyncio.to_thread(self.tracing.shutdown)
        logger.info("stopped")
        self._stopped.set()

    async def serve(self, on_started: Callable[[ShopmeshServer], None] | None = None) -> None:
        """Start, then run until SIGTERM/SIGINT has drained the server.

        `on_started` is called once the server accepts calls (e.g. to announce ports).
        """
        loop = asyncio.get_running_loop()
        drain_tasks: list[asyncio.Task[None]] = []
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, lambda: drain_tasks.append(asyncio.create_task(self.drain())))
        await self.start()
        if on_started is not None:
            on_started(self)
        await self._stopped.wait()


def create_server(
    config: PlatformConfig,
    services: Sequence[ServiceBinding],
    *,
    readiness: ReadinessProbe = always_ready,
    user_tokens: UserTokenVerifier | None = None,
    registry: CollectorRegistry | None = None,
    interceptors: ChainFactory = default_chain,
    tracing: Tracing | None = None,
) -> ShopmeshServer:
    """Build the server for `config.service_name`; call `serve()` (or `start()`) on it.

    `registry` holds its metrics (a new one if not given), beside those of the
    service's consumers and relays. `interceptors` is called like `default_chain`
    (keyword arguments `auth`, `registry`, `tracer_provider`, `exporting`); only
    benchmarks pass anything else. `tracing` is the process's (a Runtime's); without
    one the server builds its own from `config.otlp_endpoint` and shuts it down when it stops.
    """
    return ShopmeshServer(
        config,
        services,
        readiness=readiness,
        user_tokens=user_tokens,
        registry=registry,
        interceptors=interceptors,
        tracing=tracing,
    )
