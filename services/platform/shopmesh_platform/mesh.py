"""The mesh declaration (mesh/mesh.yaml): services, ports and per-method access.

Loaded once at start into frozen dataclasses. The auth interceptor asks it which
access class a method has; the channel factory asks it which methods are
idempotent and what their deadlines are; the renderers read the same file.
A method that is not declared has no access class and cannot be called.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

DEFAULT_MESH_FILE = Path(__file__).resolve().parents[3] / "mesh" / "mesh.yaml"


class MeshDeclarationError(ValueError):
    """The declaration is malformed; the message names the offending entry."""


class AccessClass(enum.Enum):
    """Who may call a method (DESIGN §6)."""

    PUBLIC = "public"
    USER = "user"
    INTERNAL = "internal"


@dataclass(frozen=True)
class MethodDecl:
    """One RPC and its policy."""

    service: str
    name: str
    full_name: str
    access: AccessClass
    idempotent: bool
    timeout_seconds: float
    roles: frozenset[str] = frozenset()
    callers: frozenset[str] = frozenset()

    @property
    def path(self) -> str:
        """The gRPC method path, `/package.Service/Method`."""
        return f"/{self.full_name}/{self.name}"


@dataclass(frozen=True)
class ServiceDecl:
    """One service of the mesh."""

    name: str
    package: str
    service: str
    grpc_port: int
    metrics_port: int
    methods: Mapping[str, MethodDecl]

    @property
    def full_name(self) -> str:
        return f"{self.package}.{self.service}"


@dataclass(frozen=True)
class MeshDeclaration:
    """The whole declaration, indexed for lookups by method path."""

    trust_domain: str
    namespace: str
    front_door: frozenset[str]
    default_timeout_seconds: float
    services: Mapping[str, ServiceDecl]
    _by_path: Mapping[str, MethodDecl] = field(repr=False)

    def service(self, name: str) -> ServiceDecl:
        try:
            return self.services[name]
        except KeyError:
            raise MeshDeclarationError(f"no service {name!r} in the mesh declaration") from None

    def method(self, path: str) -> MethodDecl | None:
        """The declaration of `/package.Service/Method`, or None if undeclared."""
        return self._by_path.get(path)

    def all_methods(self) -> list[MethodDecl]:
        return list(self._by_path.values())

    @property
    def identities(self) -> list[str]:
        """Every mesh identity: the services, then the front door."""
        return [*self.services, *sorted(self.front_door)]


def _require(mapping: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in mapping:
        raise MeshDeclarationError(f"{where}: missing '{key}'")
    return mapping[key]


def _port(value: Any, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value < 65536:
        raise MeshDeclarationError(f"{where}: must be a port number 1-65535, got {value!r}")
    return value


def _method(service: str, full_name: str, name: str, raw: Any, default_timeout: float) -> MethodDecl:
    where = f"services.{service}.methods.{name}"
    if not isinstance(raw, Mapping):
        raise MeshDeclarationError(f"{where}: must be a mapping with at least 'access'")
    unknown = set(raw) - {"access", "idempotent", "timeout", "roles", "callers"}
    if unknown:
        raise MeshDeclarationError(f"{where}: unknown keys {sorted(unknown)}")
    access_raw = _require(raw, "access", where)
    try:
        access = AccessClass(access_raw)
    except ValueError:
        allowed = ", ".join(a.value for a in AccessClass)
        raise MeshDeclarationError(f"{where}.access: {access_raw!r} is not one of {allowed}") from None
    timeout = raw.get("timeout", default_timeout)
    if not isinstance(timeout, (int, float)) or timeout <= 0:
        raise MeshDeclarationError(f"{where}.timeout: must be a positive number of seconds")
    callers = frozenset(raw.get("callers", ()))
    if access is AccessClass.INTERNAL and not callers:
        raise MeshDeclarationError(f"{where}: an internal method must name its callers")
    return MethodDecl(
        service=service,
        name=name,
        full_name=full_name,
        access=access,
        idempotent=bool(raw.get("idempotent", False)),
        timeout_seconds=float(timeout),
        roles=frozenset(raw.get("roles", ())),
        callers=callers,
    )


def parse_mesh(document: Mapping[str, Any]) -> MeshDeclaration:
    """Build a MeshDeclaration from the parsed YAML, checking every entry."""
    if not isinstance(document, Mapping):
        raise MeshDeclarationError("the mesh declaration must be a YAML mapping")
    default_timeout = float(document.get("defaults", {}).get("timeout", 5))
    services: dict[str, ServiceDecl] = {}
    by_path: dict[str, MethodDecl] = {}
    for name, raw in _require(document, "services", "mesh").items():
        where = f"services.{name}"
        package = _require(raw, "package", where)
        service = _require(raw, "service", where)
        full_name = f"{package}.{service}"
        methods = {
            method_name: _method(name, full_name, method_name, method_raw, default_timeout)
            for method_name, method_raw in _require(raw, "methods", where).items()
        }
        decl = ServiceDecl(
            name=name,
            package=package,
            service=service,
            grpc_port=_port(_require(raw, "grpc_port", where), f"{where}.grpc_port"),
            metrics_port=_port(_require(raw, "metrics_port", where), f"{where}.metrics_port"),
            methods=methods,
        )
        services[name] = decl
        by_path.update((m.path, m) for m in methods.values())
    front_door = frozenset(document.get("front_door", ("edge", "developer")))
    for method in by_path.values():
        strangers = method.callers - set(services) - front_door
        if strangers:
            raise MeshDeclarationError(
                f"services.{method.service}.methods.{method.name}.callers: unknown identities {sorted(strangers)}"
            )
    return MeshDeclaration(
        trust_domain=str(document.get("trust_domain", "cluster.local")),
        namespace=str(document.get("namespace", "shopmesh")),
        front_door=front_door,
        default_timeout_seconds=default_timeout,
        services=services,
        _by_path=by_path,
    )


def load_mesh(path: Path = DEFAULT_MESH_FILE) -> MeshDeclaration:
    """Read and check the declaration file."""
    try:
        document = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise MeshDeclarationError(f"cannot read mesh declaration {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise MeshDeclarationError(f"{path}: not valid YAML: {exc}") from exc
    return parse_mesh(document)
