"""The mesh declaration (mesh/mesh.yaml): services, ports and per-method access.

Loaded once at start into frozen dataclasses. The auth interceptor asks it which
access class a method has; the channel factory asks it which methods are
idempotent and what their deadlines are; the renderers read the same file.
A method that is not declared has no access class and cannot be called.
Each service also declares its storage (PostgreSQL or MongoDB and its database),
the Kafka topics it publishes and consumes (checked against kafka/topics.yaml;
one publisher per topic) and the load-balancing policy the cluster uses for it.
The `auth` section names the service that issues user tokens, the method that
publishes its keys and the event that revokes a token (shopmesh_platform.auth).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from shopmesh_platform.events.topics import DEFAULT_TOPICS_FILE, DLQ_SUFFIX, declared_topic_names

DEFAULT_MESH_FILE = Path(__file__).resolve().parents[3] / "mesh" / "mesh.yaml"


class MeshDeclarationError(ValueError):
    """The declaration is malformed; the message names the offending entry."""


class AccessClass(enum.Enum):
    """Who may call a method (DESIGN §6)."""

    PUBLIC = "public"
    USER = "user"
    INTERNAL = "internal"


class StorageKind(enum.Enum):
    """Which database a service keeps its state in (DESIGN §1)."""

    POSTGRES = "postgres"
    MONGO = "mongo"


class LoadBalancer(enum.Enum):
    """How callers spread calls over a service's replicas (the cluster's DestinationRule)."""

    ROUND_ROBIN = "round_robin"
    LEAST_REQUEST = "least_request"
    RANDOM = "random"


@dataclass(frozen=True)
class StorageDecl:
    """A service's own database: its kind and name (no service reads another's)."""

    kind: StorageKind
    database: str


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
    storage: StorageDecl | None = None
    # Kafka topics (names from kafka/topics.yaml). A consumer may also write the
    # `<topic>.dlq` twin of each topic it consumes (messages that keep failing).
    publishes: frozenset[str] = frozenset()
    consumes: frozenset[str] = frozenset()
    load_balancer: LoadBalancer = LoadBalancer.LEAST_REQUEST

    @property
    def full_name(self) -> str:
        return f"{self.package}.{self.service}"

    @property
    def dead_letter_topics(self) -> frozenset[str]:
        """The dead-letter topics this service may write: one per consumed topic."""
        return frozenset(f"{topic}{DLQ_SUFFIX}" for topic in self.consumes)


@dataclass(frozen=True)
class AuthDecl:
    """Who issues user tokens: every other service verifies them against the issuer's keys.

    `jwks_method` is one of the issuer's declared methods (its keys, as a
    JWKS); `revocation_event` (the full protobuf name, in the issuer's package)
    on `revocation_topic` (a topic the issuer publishes) revokes one token.
    """

    issuer: str
    jwks_method: MethodDecl
    revocation_topic: str
    revocation_event: str


@dataclass(frozen=True)
class MeshDeclaration:
    """The whole declaration, indexed for lookups by method path."""

    trust_domain: str
    namespace: str
    front_door: frozenset[str]
    default_timeout_seconds: float
    services: Mapping[str, ServiceDecl]
    _by_path: Mapping[str, MethodDecl] = field(repr=False)
    auth: AuthDecl | None = None

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


ROLES = frozenset({"customer", "admin"})
"""The user roles a token may carry (DESIGN §6); `roles` may name only these."""

DOCUMENT_KEYS = frozenset(
    {"version", "trust_domain", "namespace", "front_door", "defaults", "services", "edge", "auth"}
)
AUTH_KEYS = frozenset({"issuer", "jwks_method", "revocation_topic", "revocation_event"})
SERVICE_KEYS = frozenset(
    {
        "package",
        "service",
        "grpc_port",
        "metrics_port",
        "methods",
        "storage",
        "publishes",
        "consumes",
        "load_balancer",
    }
)
STORAGE_KEYS = frozenset({"kind", "database"})
METHOD_KEYS = frozenset({"access", "idempotent", "timeout", "roles", "callers"})
# Service names become DNS SANs and SPIFFE service accounts; method names are protobuf identifiers.
SERVICE_NAME = re.compile(r"[a-z][a-z0-9-]{0,62}")
METHOD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
DATABASE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def _require(mapping: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in mapping:
        raise MeshDeclarationError(f"{where}: missing '{key}'")
    return mapping[key]


def _mapping(value: Any, where: str, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping) or not value:
        raise MeshDeclarationError(f"{where}: must be a non-empty mapping of {what}")
    return value


def _known_keys(mapping: Mapping[str, Any], allowed: frozenset[str], where: str) -> None:
    unknown = set(mapping) - allowed
    if unknown:
        raise MeshDeclarationError(f"{where}: unknown keys {sorted(map(str, unknown))}")


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise MeshDeclarationError(f"{where}: must be a non-empty string")
    return value


def _names(value: Any, where: str) -> frozenset[str]:
    """A non-empty YAML list of distinct non-empty strings."""
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise MeshDeclarationError(f"{where}: must be a non-empty list of names, got {value!r}")
    duplicates = sorted({v for v in value if value.count(v) > 1})
    if duplicates:
        raise MeshDeclarationError(f"{where}: duplicates {duplicates}")
    return frozenset(value)


def _seconds(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float("inf"):
        raise MeshDeclarationError(f"{where}: must be a positive number of seconds, got {value!r}")
    return float(value)


def _port(value: Any, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value < 65536:
        raise MeshDeclarationError(f"{where}: must be a port number 1-65535, got {value!r}")
    return value


def _method(service: str, full_name: str, name: Any, raw: Any, default_timeout: float) -> MethodDecl:
    where = f"services.{service}.methods.{name}"
    if not isinstance(name, str) or not METHOD_NAME.fullmatch(name):
        raise MeshDeclarationError(f"services.{service}.methods.{name!r}: a method name must be a protobuf identifier")
    if not isinstance(raw, Mapping):
        raise MeshDeclarationError(f"{where}: must be a mapping with at least 'access'")
    _known_keys(raw, METHOD_KEYS, where)
    access_raw = _require(raw, "access", where)
    try:
        access = AccessClass(access_raw)
    except (ValueError, TypeError):
        allowed = ", ".join(a.value for a in AccessClass)
        raise MeshDeclarationError(f"{where}.access: {access_raw!r} is not one of {allowed}") from None
    idempotent = raw.get("idempotent", False)
    if not isinstance(idempotent, bool):
        raise MeshDeclarationError(f"{where}.idempotent: must be true or false, got {idempotent!r}")
    timeout = _seconds(raw["timeout"], f"{where}.timeout") if "timeout" in raw else default_timeout
    callers = _names(raw["callers"], f"{where}.callers") if "callers" in raw else frozenset()
    roles = _names(raw["roles"], f"{where}.roles") if "roles" in raw else frozenset()
    if roles and access is not AccessClass.USER:
        # Roles come from a user token; on any other class they would be silently ignored.
        raise MeshDeclarationError(f"{where}.roles: only 'user' methods take roles, this one is {access.value}")
    if roles - ROLES:
        raise MeshDeclarationError(
            f"{where}.roles: unknown roles {sorted(roles - ROLES)} (known: {', '.join(sorted(ROLES))})"
        )
    if roles and callers:
        # A service caller acts without a user, so it has no role to check.
        raise MeshDeclarationError(
            f"{where}: a role-restricted method cannot name service callers (a service has no role)"
        )
    if access is AccessClass.INTERNAL and not callers:
        raise MeshDeclarationError(f"{where}: an internal method must name its callers")
    return MethodDecl(
        service=service,
        name=name,
        full_name=full_name,
        access=access,
        idempotent=idempotent,
        timeout_seconds=timeout,
        roles=roles,
        callers=callers,
    )


def _choice(value: Any, kind: type[enum.Enum], where: str) -> Any:
    try:
        return kind(value)
    except (ValueError, TypeError):
        allowed = ", ".join(str(member.value) for member in kind)
        raise MeshDeclarationError(f"{where}: {value!r} is not one of {allowed}") from None


def _storage(raw: Any, where: str) -> StorageDecl:
    if not isinstance(raw, Mapping):
        raise MeshDeclarationError(f"{where}: must be a mapping with 'kind' and 'database'")
    _known_keys(raw, STORAGE_KEYS, where)
    kind = _choice(_require(raw, "kind", where), StorageKind, f"{where}.kind")
    database = _require(raw, "database", where)
    if not isinstance(database, str) or not DATABASE_NAME.fullmatch(database):
        raise MeshDeclarationError(
            f"{where}.database: must be a database name (lower-case letters, digits, '_'), got {database!r}"
        )
    return StorageDecl(kind=kind, database=database)


def _topics(raw: Mapping[str, Any], key: str, where: str, known: frozenset[str]) -> frozenset[str]:
    """A service's published or consumed topics: names declared in kafka/topics.yaml."""
    if key not in raw:
        return frozenset()
    names = _names(raw[key], f"{where}.{key}")
    unknown = names - known
    if unknown:
        raise MeshDeclarationError(
            f"{where}.{key}: unknown topics {sorted(unknown)} (kafka/topics.yaml declares: {', '.join(sorted(known))})"
        )
    return names


def _service(name: Any, raw: Any, default_timeout: float, topics: frozenset[str]) -> ServiceDecl:
    if not isinstance(name, str) or not SERVICE_NAME.fullmatch(name):
        raise MeshDeclarationError(
            f"services.{name!r}: a service name must be lower-case letters, digits and '-' (it is a DNS name)"
        )
    where = f"services.{name}"
    if not isinstance(raw, Mapping):
        raise MeshDeclarationError(f"{where}: must be a mapping")
    _known_keys(raw, SERVICE_KEYS, where)
    package = _text(_require(raw, "package", where), f"{where}.package")
    service = _text(_require(raw, "service", where), f"{where}.service")
    full_name = f"{package}.{service}"
    methods_raw = _mapping(_require(raw, "methods", where), f"{where}.methods", "method names")
    return ServiceDecl(
        name=name,
        package=package,
        service=service,
        grpc_port=_port(_require(raw, "grpc_port", where), f"{where}.grpc_port"),
        metrics_port=_port(_require(raw, "metrics_port", where), f"{where}.metrics_port"),
        methods={
            method_name: _method(name, full_name, method_name, method_raw, default_timeout)
            for method_name, method_raw in methods_raw.items()
        },
        storage=_storage(raw["storage"], f"{where}.storage") if "storage" in raw else None,
        publishes=_topics(raw, "publishes", where, topics),
        consumes=_topics(raw, "consumes", where, topics),
        load_balancer=_choice(raw.get("load_balancer", "least_request"), LoadBalancer, f"{where}.load_balancer"),
    )


def _check_unique(services: Mapping[str, ServiceDecl]) -> None:
    """No two services share a port or a gRPC service name."""
    ports: dict[int, str] = {}
    full_names: dict[str, str] = {}
    for decl in services.values():
        for kind, port in (("grpc_port", decl.grpc_port), ("metrics_port", decl.metrics_port)):
            where = f"services.{decl.name}.{kind}"
            if port in ports:
                raise MeshDeclarationError(f"{where}: port {port} is already used by {ports[port]}")
            ports[port] = where
        if decl.full_name in full_names:
            raise MeshDeclarationError(
                f"services.{decl.name}: {decl.full_name} is already declared by {full_names[decl.full_name]}"
            )
        full_names[decl.full_name] = f"services.{decl.name}"
    publishers: dict[str, str] = {}
    for decl in services.values():
        for topic in sorted(decl.publishes):
            if topic in publishers:
                # One writer per topic: its events are that service's facts, nobody else's.
                raise MeshDeclarationError(
                    f"services.{decl.name}.publishes: {topic} is already published by {publishers[topic]}"
                )
            publishers[topic] = decl.name


def _auth(raw: Any, services: Mapping[str, ServiceDecl]) -> AuthDecl:
    where = "mesh.auth"
    if not isinstance(raw, Mapping):
        raise MeshDeclarationError(f"{where}: must be a mapping with {', '.join(sorted(AUTH_KEYS))}")
    _known_keys(raw, AUTH_KEYS, where)
    issuer_name = _text(_require(raw, "issuer", where), f"{where}.issuer")
    issuer = services.get(issuer_name)
    if issuer is None:
        raise MeshDeclarationError(f"{where}.issuer: {issuer_name!r} is not a declared service")
    method_name = _text(_require(raw, "jwks_method", where), f"{where}.jwks_method")
    method = issuer.methods.get(method_name)
    if method is None:
        raise MeshDeclarationError(f"{where}.jwks_method: {issuer_name} declares no method {method_name!r}")
    if method.access is not AccessClass.PUBLIC:
        # Every service (and the edge) fetches the keys before it can verify anyone.
        raise MeshDeclarationError(f"{where}.jwks_method: {method_name} must be public, it is {method.access.value}")
    topic = _text(_require(raw, "revocation_topic", where), f"{where}.revocation_topic")
    if topic not in issuer.publishes:
        raise MeshDeclarationError(f"{where}.revocation_topic: {topic!r} is not a topic {issuer_name} publishes")
    event = _text(_require(raw, "revocation_event", where), f"{where}.revocation_event")
    if not METHOD_NAME.fullmatch(event):
        raise MeshDeclarationError(
            f"{where}.revocation_event: {event!r} must be a message name in {issuer.package} (e.g. SessionRevoked)"
        )
    return AuthDecl(
        issuer=issuer_name,
        jwks_method=method,
        revocation_topic=topic,
        revocation_event=f"{issuer.package}.{event}",
    )


def topic_names(path: Path = DEFAULT_TOPICS_FILE) -> frozenset[str]:
    """The topics declared in kafka/topics.yaml (without their `.dlq` twins)."""
    try:
        return frozenset(declared_topic_names(path))
    except OSError as exc:
        raise MeshDeclarationError(f"cannot read topic declaration {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise MeshDeclarationError(f"{path}: not valid YAML: {exc}") from exc
    except ValueError as exc:
        raise MeshDeclarationError(str(exc)) from exc


def parse_mesh(document: Mapping[str, Any], topics: frozenset[str] | None = None) -> MeshDeclaration:
    """Build a MeshDeclaration from the parsed YAML, checking every entry strictly.

    Anything unexpected (an unknown key, a wrong type, a role where no role is
    checked, a caller nobody declared, a port used twice, a topic that
    kafka/topics.yaml does not declare or that two services publish) is an error
    naming the entry: a declaration that says more than is enforced must not load.
    `topics` are the declared topic names (default: those of kafka/topics.yaml).
    """
    known_topics = topic_names() if topics is None else topics
    if not isinstance(document, Mapping):
        raise MeshDeclarationError("the mesh declaration must be a YAML mapping")
    _known_keys(document, DOCUMENT_KEYS, "mesh")
    if document.get("version", 1) != 1:
        raise MeshDeclarationError(f"mesh.version: only version 1 is understood, got {document['version']!r}")
    defaults = document.get("defaults", {})
    if not isinstance(defaults, Mapping):
        raise MeshDeclarationError("mesh.defaults: must be a mapping")
    _known_keys(defaults, frozenset({"timeout"}), "mesh.defaults")
    default_timeout = _seconds(defaults.get("timeout", 5), "mesh.defaults.timeout")
    services_raw = _mapping(_require(document, "services", "mesh"), "mesh.services", "service names")
    services = {name: _service(name, raw, default_timeout, known_topics) for name, raw in services_raw.items()}
    _check_unique(services)
    front_door = _names(document.get("front_door", ["edge", "developer"]), "mesh.front_door")
    if front_door & set(services):
        raise MeshDeclarationError(f"mesh.front_door: {sorted(front_door & set(services))} is also a service")
    by_path: dict[str, MethodDecl] = {}
    for decl in services.values():
        for method in decl.methods.values():
            strangers = method.callers - set(services) - front_door
            if strangers:
                raise MeshDeclarationError(
                    f"services.{method.service}.methods.{method.name}.callers: unknown identities {sorted(strangers)}"
                )
            by_path[method.path] = method
    return MeshDeclaration(
        trust_domain=_text(document.get("trust_domain", "cluster.local"), "mesh.trust_domain"),
        namespace=_text(document.get("namespace", "shopmesh"), "mesh.namespace"),
        front_door=front_door,
        default_timeout_seconds=default_timeout,
        services=services,
        _by_path=by_path,
        auth=_auth(document["auth"], services) if "auth" in document else None,
    )


def load_mesh(path: Path = DEFAULT_MESH_FILE, topics_file: Path = DEFAULT_TOPICS_FILE) -> MeshDeclaration:
    """Read and check the declaration file (its topics against `topics_file`)."""
    try:
        document = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise MeshDeclarationError(f"cannot read mesh declaration {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise MeshDeclarationError(f"{path}: not valid YAML: {exc}") from exc
    return parse_mesh(document, topic_names(topics_file))
