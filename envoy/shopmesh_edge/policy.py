"""The edge section of the mesh declaration: CORS, body limit, rate-limit budgets,
connection limits, and health/reflection at the edge per profile.

Read from mesh/mesh.yaml (the same file as the services) plus per-instance
overrides, into frozen dataclasses the renderer uses.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

from shopmesh_platform.mesh import DEFAULT_MESH_FILE, MeshDeclarationError

# `developer`: the local stack (make up, the tests); `production`: a cluster's edge.
PROFILES = ("developer", "production")
# The rate-limit class of health checks and reflection at the edge (an override key too).
PLATFORM_API = "platform_api"


@dataclass(frozen=True)
class Budget:
    """Calls one client may make per minute and per hour (None: no such bucket)."""

    per_minute: int | None = None
    per_hour: int | None = None

    @classmethod
    def parse(cls, raw: Mapping[str, Any], where: str) -> Budget:
        unknown = set(raw) - {"per_minute", "per_hour"}
        if unknown:
            raise MeshDeclarationError(f"{where}: unknown keys {sorted(unknown)}")
        values = {}
        for key in ("per_minute", "per_hour"):
            value = raw.get(key)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise MeshDeclarationError(f"{where}.{key}: must be a positive integer")
            values[key] = value
        return cls(**values)


@dataclass(frozen=True)
class Cors:
    allowed_origins: tuple[str, ...]
    allowed_methods: tuple[str, ...]
    allowed_headers: tuple[str, ...]
    expose_headers: tuple[str, ...]
    allow_credentials: bool
    max_age_seconds: int


def _positive(raw: Mapping[str, Any], key: str, default: int, where: str) -> int:
    value = raw.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise MeshDeclarationError(f"{where}.{key}: must be a positive integer")
    return value


@dataclass(frozen=True)
class PlatformApi:
    """Health checks and server reflection through the edge (grpcurl without a certificate).

    Routed only in the listed profiles; each client address has a budget of calls,
    and each service at most `max_concurrent_streams` open calls through one edge,
    all clients together (health `Watch` streams stay open).
    """

    profiles: tuple[str, ...] = ("developer",)
    budget: Budget = Budget(per_minute=120, per_hour=2000)
    max_concurrent_streams: int = 50

    def enabled(self, profile: str) -> bool:
        return profile in self.profiles

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> PlatformApi:
        where = "edge.platform_api"
        unknown = set(raw) - {"profiles", "budget", "max_concurrent_streams"}
        if unknown:
            raise MeshDeclarationError(f"{where}: unknown keys {sorted(unknown)}")
        profiles = tuple(raw.get("profiles", cls.profiles))
        if not set(profiles) <= set(PROFILES):
            raise MeshDeclarationError(f"{where}.profiles: each one of {list(PROFILES)}")
        return cls(
            profiles=profiles,
            budget=Budget.parse(raw["budget"], f"{where}.budget") if "budget" in raw else cls.budget,
            max_concurrent_streams=_positive(raw, "max_concurrent_streams", cls.max_concurrent_streams, where),
        )


@dataclass(frozen=True)
class ConnectionLimits:
    """What one edge holds open for clients, and how long a slow client may take."""

    max_downstream_connections: int = 10000
    max_streams_per_connection: int = 100
    request_headers_timeout_seconds: int = 10
    idle_timeout_seconds: int = 300
    max_heap_bytes: int = 1024 * 1024 * 1024

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> ConnectionLimits:
        where = "edge.connections"
        names = {f.name for f in fields(cls)}
        unknown = set(raw) - names
        if unknown:
            raise MeshDeclarationError(f"{where}: unknown keys {sorted(unknown)}")
        return cls(**{name: _positive(raw, name, getattr(cls, name), where) for name in names})


@dataclass(frozen=True)
class EdgePolicy:
    api_version: str
    max_request_bytes: int
    cors: Cors
    default_budget: Budget
    service_budgets: Mapping[str, Budget] = field(default_factory=dict)
    method_budgets: Mapping[str, Budget] = field(default_factory=dict)
    platform_api: PlatformApi = field(default_factory=PlatformApi)
    connections: ConnectionLimits = field(default_factory=ConnectionLimits)
    # Where calls that name no service go (health and reflection without the selector
    # header, CORS preflights): `edge.default_service`, else the first declared service.
    default_service: str | None = None

    def budget_class(self, service: str, method: str) -> str:
        """The rate-limit class of a method: its own budget, or its service's."""
        return f"{service}.{method}" if f"{service}.{method}" in self.method_budgets else service

    def budget(self, budget_class: str) -> Budget:
        if budget_class == PLATFORM_API:
            return self.platform_api.budget
        if budget_class in self.method_budgets:
            return self.method_budgets[budget_class]
        return self.service_budgets.get(budget_class, self.default_budget)

    def with_overrides(self, rate_limits: Mapping[str, Any], extra_origins: tuple[str, ...]) -> EdgePolicy:
        services = dict(self.service_budgets)
        methods = dict(self.method_budgets)
        platform_api = self.platform_api
        for name, raw in rate_limits.items():
            budget = Budget.parse(raw, f"rate limit override {name}")
            if name == PLATFORM_API:
                platform_api = replace(platform_api, budget=budget)
            else:
                (methods if "." in name else services)[name] = budget
        cors = replace(self.cors, allowed_origins=self.cors.allowed_origins + extra_origins)
        return replace(self, service_budgets=services, method_budgets=methods, cors=cors, platform_api=platform_api)


def parse_edge(document: Mapping[str, Any]) -> EdgePolicy:
    raw = document.get("edge") or {}
    cors = raw.get("cors", {})
    limits = raw.get("rate_limits", {})
    return EdgePolicy(
        api_version=str(raw.get("api_version", "v1")),
        max_request_bytes=int(raw.get("max_request_bytes", 1024 * 1024)),
        cors=Cors(
            allowed_origins=tuple(cors.get("allowed_origins", ())),
            allowed_methods=tuple(cors.get("allowed_methods", ("GET", "POST", "OPTIONS"))),
            allowed_headers=tuple(cors.get("allowed_headers", ("authorization", "content-type"))),
            expose_headers=tuple(cors.get("expose_headers", ())),
            allow_credentials=bool(cors.get("allow_credentials", False)),
            max_age_seconds=int(cors.get("max_age_seconds", 3600)),
        ),
        default_budget=Budget.parse(limits.get("default", {}), "edge.rate_limits.default"),
        service_budgets={
            name: Budget.parse(b, f"edge.rate_limits.services.{name}") for name, b in limits.get("services", {}).items()
        },
        method_budgets={
            name: Budget.parse(b, f"edge.rate_limits.methods.{name}") for name, b in limits.get("methods", {}).items()
        },
        platform_api=PlatformApi.parse(raw.get("platform_api") or {}),
        connections=ConnectionLimits.parse(raw.get("connections") or {}),
        default_service=_optional_name(raw, "default_service", "edge"),
    )


def _optional_name(raw: Mapping[str, Any], key: str, where: str) -> str | None:
    value = raw.get(key)
    if value is not None and (not isinstance(value, str) or not value):
        raise MeshDeclarationError(f"{where}.{key}: must be a service name, got {value!r}")
    return value


def load_edge_policy(
    path: Path = DEFAULT_MESH_FILE, *, rate_limit_overrides: str = "", extra_origins: str = ""
) -> EdgePolicy:
    """The declared policy with per-instance overrides (JSON budgets, comma-separated origins)."""
    policy = parse_edge(yaml.safe_load(path.read_text()))
    try:
        overrides = json.loads(rate_limit_overrides) if rate_limit_overrides.strip() else {}
    except json.JSONDecodeError as exc:
        raise MeshDeclarationError(f"SHOPMESH_EDGE_RATE_LIMITS is not valid JSON: {exc}") from exc
    origins = tuple(o.strip() for o in extra_origins.split(",") if o.strip())
    return policy.with_overrides(overrides, origins)
