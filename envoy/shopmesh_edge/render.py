"""The Envoy edge config, rendered with PyYAML from the mesh declaration.

One listener serves REST/JSON (HTTP/1.1, transcoded to gRPC by
grpc_json_transcoder from the descriptor set of `make gen`) and gRPC (h2c,
passed through) on the same port. The REST mapping comes from the protos'
`google.api.http` rules, never from here.

Filter order: header_mutation (security headers on every answer, Envoy's own
replies included; no `server` header; request headers gRPC cannot carry are
dropped) -> buffer (413 above the body limit,
counted on the body the client sent: after transcoding it would be the smaller
protobuf) -> transcoder (every later filter sees the gRPC path and route) -> CORS
(answers preflights before anything asks for a token) -> jwt_authn (`user`
methods need a valid token; its subject goes to dynamic metadata) ->
local_ratelimit (per client: JWT subject on `user` methods, client address on
anonymous ones; a minute and an hour bucket each) -> router.

Routes are per method (exact gRPC path) with the method's timeout and the
`X-API-Version` / `X-Service-Name` response headers; `internal` methods get no
route. A server-streaming method (from the contracts' descriptor set, e.g.
WatchNotifications) has neither a request timeout nor a stream idle timeout: it
lives until the client leaves or the service ends it (on token expiry, at the
latest); each stream it opens counts against the caller's budget, like a call.
`/healthz` answers at the edge. A malformed `grpc-timeout` or `grpc-encoding`
is refused first (INVALID_ARGUMENT; REST: 400). In the profiles where mesh.yaml's
`edge.platform_api` allows it, health checks and reflection go to the service
named by `x-shopmesh-service` (default: `edge.default_service`; each service
reflects only its own API), behind a per-address budget and a circuit breaker capping the open calls
per service; elsewhere they have no route. Envoy's own error replies to REST
clients are `google.rpc.Status`-shaped JSON, like the services' errors.

Connections: HTTP/2 streams per connection, request-header and idle timeouts,
and the overload manager (global connection cap, heap) come from
`edge.connections`. Envoy's admin interface listens only on a Unix socket (mode
0600: it can change runtime settings); a second listener on 127.0.0.1 exposes
just `GET /ready` and `GET /stats/prometheus` from it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from google.protobuf import descriptor_pb2

from shopmesh_edge.policy import PLATFORM_API, EdgePolicy
from shopmesh_platform.mesh import AccessClass, MeshDeclaration, MeshDeclarationError, MethodDecl

HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
SERVICE_SELECTOR_HEADER = "x-shopmesh-service"
PLATFORM_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")
JWT_PROVIDER = "user_token"
JWT_FILTER = "envoy.filters.http.jwt_authn"
JWKS_CLUSTER = "edge_self_jwks"
EDGE_METADATA = "shopmesh.edge"
ADMIN_CLUSTER = "envoy_admin"
# The admin paths the metrics listener forwards (GET only); nothing else of admin is reachable.
EXPOSED_ADMIN_PATHS = ("/ready", "/stats/prometheus")
# Unix socket paths are limited to 108 bytes (sun_path), the terminating NUL included.
MAX_SOCKET_PATH = 107
# Sent with every answer: no MIME sniffing; nothing cached unless the service says otherwise.
SECURITY_HEADERS = {"x-content-type-options": "nosniff", "cache-control": "no-store"}
# File-based SDS secrets: the edge's certificate and key, and the mesh CA.
IDENTITY_SECRET = "edge_identity"
CA_SECRET = "mesh_ca"
SECRET_TYPE = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"
WINDOWS = {"minute": 60, "hour": 3600}
OPENAPI_PATH = "/api/v1/openapi.json"
# Envoy refuses a direct_response body above this (its default is 4 KiB).
MAX_DIRECT_RESPONSE_BYTES = 4 * 1024 * 1024
# The contracts as `make gen` builds them: which methods stream (read here, not by Envoy).
CONTRACTS = Path(__file__).resolve().parents[2] / "gen" / "descriptors" / "shopmesh.binpb"


@cache
def server_streaming_paths(descriptor_set: Path = CONTRACTS) -> frozenset[str]:
    """The gRPC paths (`/package.Service/Method`) of every server-streaming method of the contracts."""
    files = descriptor_pb2.FileDescriptorSet.FromString(descriptor_set.read_bytes()).file
    return frozenset(
        f"/{file.package}.{service.name}/{method.name}"
        for file in files
        for service in file.service
        for method in service.method
        if method.server_streaming
    )


@dataclass(frozen=True)
class EdgeSettings:
    """What differs between instances: ports, files, token issuer, policy overrides."""

    listen_port: int
    # GET /ready and GET /stats/prometheus, nothing else (127.0.0.1).
    metrics_port: int
    # Envoy's admin interface: this Unix socket only, mode 0600.
    admin_socket: Path
    upstream_ports: Mapping[str, int]
    descriptor: Path
    access_log: Path
    policy: EdgePolicy
    # A profile of mesh.yaml's edge section (developer, production).
    profile: str = "developer"
    jwt_issuer: str = "shopmesh-users"
    jwt_audience: str = "shopmesh"
    # How long the JWKS is cached: a new key, or a retired one, reaches the edge within it.
    jwks_cache_seconds: float = 300.0
    # Mutual TLS towards the services (None: plaintext, e.g. behind Istio sidecars).
    upstream_tls: UpstreamTls | None = None
    # gen/openapi/openapi.json, served at OPENAPI_PATH (None: no such route).
    openapi_document: Path | None = None


@dataclass(frozen=True)
class UpstreamTls:
    """The edge's own certificate, and the CA that issued every mesh identity.

    Envoy reads them through file-based SDS (resources rendered into `sds_dir`)
    and reads them again whenever a file is renamed into `renewed_marker_dir`,
    which the issuer does once a renewed key and certificate are both in place:
    new connections to the services present the new certificate, no restart.
    """

    cert: Path
    key: Path
    ca: Path
    sds_dir: Path
    renewed_marker_dir: Path

    @property
    def identity_resource(self) -> Path:
        return self.sds_dir / f"{IDENTITY_SECRET}.yaml"

    @property
    def ca_resource(self) -> Path:
        return self.sds_dir / f"{CA_SECRET}.yaml"


def _seconds(value: float) -> str:
    return f"{value:g}s"


def _header(key: str, value: str) -> dict[str, Any]:
    return {"header": {"key": key, "value": value}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}


def access_log(path: Path) -> list[dict[str, Any]]:
    # Never Authorization, cookies or bodies: tokens and passwords stay out of logs.
    fields = {
        "time": "%START_TIME%",
        "method": "%REQ(X-ENVOY-ORIGINAL-METHOD?:METHOD)%",
        "path": "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%",
        "grpc_path": "%REQ(:PATH)%",
        "protocol": "%PROTOCOL%",
        "status": "%RESPONSE_CODE%",
        "grpc_status": "%GRPC_STATUS(NUMBER)%",
        "details": "%RESPONSE_CODE_DETAILS%",
        "flags": "%RESPONSE_FLAGS%",
        "bytes_in": "%BYTES_RECEIVED%",
        "bytes_out": "%BYTES_SENT%",
        "duration_ms": "%DURATION%",
        "upstream": "%UPSTREAM_HOST%",
        "route": "%ROUTE_NAME%",
        "request_id": "%REQ(X-REQUEST-ID)%",
        "client": "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%",
        "user_agent": "%REQ(USER-AGENT)%",
    }
    return [
        {
            "name": "envoy.access_loggers.file",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
                "path": str(path),
                "log_format": {"json_format": fields},
            },
        }
    ]


# Envoy's own replies as google.rpc.Status JSON for REST clients: HTTP status -> (gRPC code, message).
LOCAL_REPLY_CODES: dict[int, tuple[int, str]] = {
    400: (3, "%LOCAL_REPLY_BODY%"),
    401: (16, "%LOCAL_REPLY_BODY%"),
    403: (7, "%LOCAL_REPLY_BODY%"),
    404: (5, "not found"),
    413: (8, "request body too large"),
    429: (8, "rate limit exceeded"),
    503: (14, "service unavailable"),
    504: (4, "deadline exceeded"),
}
_REST_REQUEST = {
    "or_filter": {
        "filters": [
            # Transcoded REST calls: the transcoder has already set content-type to application/grpc.
            {"header_filter": {"header": {"name": "x-envoy-original-path", "present_match": True}}},
            {
                "header_filter": {
                    "header": {
                        "name": "content-type",
                        "string_match": {"prefix": "application/grpc"},
                        "invert_match": True,
                        "treat_missing_header_as_empty": True,
                    }
                }
            },
        ]
    }
}
_GRPC_REQUEST = {
    "and_filter": {
        "filters": [
            {"header_filter": {"header": {"name": "content-type", "string_match": {"prefix": "application/grpc"}}}},
            {
                "header_filter": {
                    "header": {"name": "x-envoy-original-path", "present_match": True, "invert_match": True}
                }
            },
        ]
    }
}
# A circuit breaker refused the call (the platform clusters' stream cap).
_OVERFLOW = {"response_flag_filter": {"flags": ["UO"]}}
OVERFLOW_MESSAGE = "too many open calls to this service's health/reflection through the edge; retry later"
_JWT_FAILED = {
    "metadata_filter": {
        "matcher": {"filter": JWT_FILTER, "path": [{"key": "jwt_failure"}], "value": {"present_match": True}}
    }
}


def _status_is(status: int) -> dict[str, Any]:
    value = {"default_value": status, "runtime_key": f"edge.local_reply.{status}"}
    return {"status_code_filter": {"comparison": {"op": "EQ", "value": value}}}


def local_reply_config(api_version: str) -> dict[str, Any]:
    version = [_header("x-api-version", api_version)]
    unauthenticated = {"json_format": {"code": 16, "message": "%LOCAL_REPLY_BODY%"}, "content_type": "application/json"}
    mappers: list[dict[str, Any]] = [
        # UNAVAILABLE with a message saying why, instead of "reset reason: overflow".
        {
            "filter": {"and_filter": {"filters": [_status_is(503), _OVERFLOW, _GRPC_REQUEST]}},
            "body_format_override": {"text_format": OVERFLOW_MESSAGE},
        },
        # jwt_authn answers some failures (e.g. audience) with 403: every token failure is 401.
        {
            "filter": {"and_filter": {"filters": [_status_is(403), _REST_REQUEST, _JWT_FAILED]}},
            "status_code": 401,
            "headers_to_add": version,
            "body_format_override": unauthenticated,
        },
        {
            "filter": {"and_filter": {"filters": [_status_is(403), _JWT_FAILED]}},
            "status_code": 401,
            "headers_to_add": version,
        },
    ]
    for status, (code, message) in LOCAL_REPLY_CODES.items():
        mappers.append(
            {
                "filter": {"and_filter": {"filters": [_status_is(status), _REST_REQUEST]}},
                "headers_to_add": version,
                "body_format_override": {
                    "json_format": {"code": code, "message": message},
                    "content_type": "application/json",
                },
            }
        )
    return {"mappers": mappers}


def _rate_limit_class(policy: EdgePolicy, method: MethodDecl) -> str:
    kind = "user" if method.access is AccessClass.USER else "anon"
    return f"{kind}:{policy.budget_class(method.service, method.name)}"


def method_route(method: MethodDecl, policy: EdgePolicy) -> dict[str, Any]:
    action: dict[str, Any] = {"cluster": method.service, "timeout": _seconds(method.timeout_seconds)}
    if method.path in server_streaming_paths():
        # A stream waits for events: no deadline, no idle cut; the service bounds its life.
        action = {"cluster": method.service, "timeout": "0s", "idle_timeout": "0s"}
    route: dict[str, Any] = {
        "name": f"{method.service}.{method.name}",
        "match": {"path": method.path},
        "route": action,
        "metadata": {"filter_metadata": {EDGE_METADATA: {"rl_class": _rate_limit_class(policy, method)}}},
        "response_headers_to_add": [
            _header("x-api-version", policy.api_version),
            _header("x-service-name", method.service),
        ],
    }
    if method.access is AccessClass.USER:
        route["typed_per_filter_config"] = {
            JWT_FILTER: {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.PerRouteConfig",
                "requirement_name": "user",
            }
        }
    return route


# Streaming: the buffer filter would hold a bidi stream until it ends.
NO_BUFFER: dict[str, Any] = {
    "envoy.filters.http.buffer": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.BufferPerRoute",
        "disabled": True,
    }
}


def unknown_grpc_route() -> dict[str, Any]:
    """gRPC calls no other route takes: UNIMPLEMENTED at once.

    Without it the buffer filter would wait for the end of a streaming call before
    Envoy could answer 404, and a reflection client (grpcurl) would hang until
    the idle timeout.
    """
    return {
        "name": "unknown-grpc",
        "match": {
            "prefix": "/",
            "headers": [{"name": "content-type", "string_match": {"prefix": "application/grpc"}}],
        },
        "direct_response": {"status": 200},
        "response_headers_to_add": [
            _header("content-type", "application/grpc"),
            _header("grpc-status", "12"),
            _header("grpc-message", "no such method at this edge"),
        ],
        "typed_per_filter_config": NO_BUFFER,
    }


# gRPC protocol headers a client may send, and the values a gRPC server accepts. The
# services' gRPC library fails a call with INTERNAL on any other value, before our code
# runs; the edge refuses it itself: INVALID_ARGUMENT (REST: 400).
GRPC_HEADER_GRAMMAR = {
    "grpc-timeout": "[0-9]{1,8}[HMSmun]",
    "grpc-encoding": "identity|gzip|deflate",
}


def malformed_grpc_header_routes() -> list[dict[str, Any]]:
    """First routes: a request whose GRPC_HEADER_GRAMMAR header has another value is refused."""
    table: list[dict[str, Any]] = []
    for header, grammar in GRPC_HEADER_GRAMMAR.items():
        malformed = [
            {"name": header, "present_match": True},
            {"name": header, "string_match": {"safe_regex": {"regex": grammar}}, "invert_match": True},
        ]
        message = f"malformed {header} header"
        table.append(
            {
                "name": f"malformed-{header}-grpc",
                "match": {
                    "prefix": "/",
                    "headers": [{"name": "content-type", "string_match": {"prefix": "application/grpc"}}, *malformed],
                },
                "direct_response": {"status": 200},
                "response_headers_to_add": [
                    _header("content-type", "application/grpc"),
                    _header("grpc-status", "3"),
                    _header("grpc-message", message),
                ],
                "typed_per_filter_config": NO_BUFFER,
            }
        )
        table.append(
            {
                "name": f"malformed-{header}",
                "match": {"prefix": "/", "headers": malformed},
                "direct_response": {"status": 400, "body": {"inline_string": message}},
            }
        )
    return table


def platform_cluster_name(service: str) -> str:
    return f"{service}_platform"


def default_service(mesh: MeshDeclaration, policy: EdgePolicy) -> str:
    """The service for calls that name none: `edge.default_service`, else the first declared one."""
    name = policy.default_service or next(iter(mesh.services))
    if name not in mesh.services:
        raise MeshDeclarationError(f"edge.default_service: {name!r} is not a service of the mesh")
    return name


def platform_routes(mesh: MeshDeclaration, policy: EdgePolicy) -> list[dict[str, Any]]:
    """Health and reflection, to the service named by `x-shopmesh-service` (default: `default_service`).

    They go to each service's platform cluster, whose circuit breaker caps the open
    calls; they are anonymous and count against the `platform_api` budget per address.
    """
    per_route = NO_BUFFER
    metadata = {"filter_metadata": {EDGE_METADATA: {"rl_class": f"anon:{PLATFORM_API}"}}}
    table: list[dict[str, Any]] = []
    for prefix in PLATFORM_PREFIXES:
        for service in mesh.services.values():
            table.append(
                {
                    "name": f"{service.name}.platform{prefix}",
                    "match": {
                        "prefix": prefix,
                        "headers": [{"name": SERVICE_SELECTOR_HEADER, "string_match": {"exact": service.name}}],
                    },
                    "route": {"cluster": platform_cluster_name(service.name), "timeout": "0s"},
                    "metadata": metadata,
                    "typed_per_filter_config": per_route,
                }
            )
        table.append(
            {
                "name": f"default.platform{prefix}",
                "match": {"prefix": prefix},
                "route": {"cluster": platform_cluster_name(default_service(mesh, policy)), "timeout": "0s"},
                "metadata": metadata,
                "typed_per_filter_config": per_route,
            }
        )
    return table


def openapi_route(document: Path, policy: EdgePolicy) -> dict[str, Any]:
    """GET /api/v1/openapi.json: the document of `make gen`, answered by Envoy itself.

    Envoy reads the file when it loads the config (a restart picks up a new one).
    """
    if document.stat().st_size > MAX_DIRECT_RESPONSE_BYTES:
        raise ValueError(f"{document} is larger than the edge serves ({MAX_DIRECT_RESPONSE_BYTES} bytes)")
    return {
        "name": "openapi",
        "match": {"path": OPENAPI_PATH, "headers": [{"name": ":method", "string_match": {"exact": "GET"}}]},
        "direct_response": {"status": 200, "body": {"filename": str(document)}},
        "response_headers_to_add": [
            _header("content-type", "application/json"),
            _header("x-api-version", policy.api_version),
        ],
    }


def routes(
    mesh: MeshDeclaration, policy: EdgePolicy, *, platform_api: bool, openapi_document: Path | None = None
) -> list[dict[str, Any]]:
    table: list[dict[str, Any]] = [
        *malformed_grpc_header_routes(),
        {
            "name": "healthz",
            "match": {"path": "/healthz"},
            "direct_response": {"status": 200, "body": {"inline_string": "ok\n"}},
            "response_headers_to_add": [_header("x-api-version", policy.api_version)],
        },
    ]
    if openapi_document is not None:
        table.append(openapi_route(openapi_document, policy))
    table += [
        method_route(method, policy)
        for service in mesh.services.values()
        for method in service.methods.values()
        if method.access is not AccessClass.INTERNAL
    ]
    if platform_api:
        table += platform_routes(mesh, policy)
    # CORS preflights keep their REST path (the transcoder leaves OPTIONS alone); the CORS
    # filter needs a route entry to act on and answers them itself, so nothing goes upstream.
    table.append(
        {
            "name": "cors-preflight",
            "match": {
                "prefix": "/",
                "headers": [
                    {"name": ":method", "string_match": {"exact": "OPTIONS"}},
                    {"name": "origin", "present_match": True},
                    {"name": "access-control-request-method", "present_match": True},
                ],
            },
            "route": {"cluster": default_service(mesh, policy), "timeout": "5s"},
        }
    )
    table.append(unknown_grpc_route())
    return table


def cors_policy(policy: EdgePolicy) -> dict[str, Any]:
    cors = policy.cors
    return {
        "envoy.filters.http.cors": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy",
            "allow_origin_string_match": [{"exact": origin} for origin in cors.allowed_origins],
            "allow_methods": ",".join(cors.allowed_methods),
            "allow_headers": ",".join(cors.allowed_headers),
            "expose_headers": ",".join(cors.expose_headers),
            "allow_credentials": cors.allow_credentials,
            "max_age": str(cors.max_age_seconds),
            "forward_not_matching_preflights": False,
        }
    }


def transcoder(mesh: MeshDeclaration, descriptor: Path, max_request_bytes: int) -> dict[str, Any]:
    return {
        "name": "envoy.filters.http.grpc_json_transcoder",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.grpc_json_transcoder.v3.GrpcJsonTranscoder",
            "proto_descriptor": str(descriptor),
            "services": [s.full_name for s in mesh.services.values()],
            "convert_grpc_status": True,
            "print_options": {
                "add_whitespace": False,
                "always_print_primitive_fields": True,
                "always_print_enums_as_ints": False,
                "preserve_proto_field_names": False,
            },
            "request_validation_options": {
                "reject_unknown_method": False,
                "reject_unknown_query_parameters": True,
                "reject_binding_body_field_collisions": True,
            },
            "max_request_body_size": max_request_bytes,
            "max_response_body_size": 4 * 1024 * 1024,
        },
    }


def jwt_authn(settings: EdgeSettings) -> dict[str, Any]:
    jwks_uri = f"http://127.0.0.1:{settings.listen_port}/.well-known/jwks.json"
    return {
        "name": JWT_FILTER,
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
            "providers": {
                JWT_PROVIDER: {
                    "issuer": settings.jwt_issuer,
                    "audiences": [settings.jwt_audience],
                    # The JWKS is the token issuer's, fetched through this edge (its public REST route).
                    # Cached for jwks_cache_seconds: a key added or retired reaches the edge within it.
                    "remote_jwks": {
                        "http_uri": {"uri": jwks_uri, "cluster": JWKS_CLUSTER, "timeout": "2s"},
                        "cache_duration": _seconds(settings.jwks_cache_seconds),
                        "async_fetch": {"fast_listener": True, "failed_refetch_duration": "1s"},
                        "retry_policy": {
                            "num_retries": 3,
                            "retry_back_off": {"base_interval": "0.2s", "max_interval": "2s"},
                        },
                    },
                    "from_headers": [{"name": "authorization", "value_prefix": "Bearer "}],
                    # The services verify the token again (and check revocations).
                    "forward": True,
                    "payload_in_metadata": "jwt_payload",
                    "failed_status_in_metadata": "jwt_failure",
                    "require_expiration": True,
                    "clock_skew_seconds": 30,
                }
            },
            "requirement_map": {"user": {"provider_name": JWT_PROVIDER}},
            "bypass_cors_preflight": True,
        },
    }


def local_ratelimit(mesh: MeshDeclaration, policy: EdgePolicy, *, platform_api: bool) -> dict[str, Any]:
    classes = sorted(
        {
            _rate_limit_class(policy, method)
            for service in mesh.services.values()
            for method in service.methods.values()
            if method.access is not AccessClass.INTERNAL
        }
        | ({f"anon:{PLATFORM_API}"} if platform_api else set())
    )
    descriptors = []
    for rl_class in classes:
        kind, budget_class = rl_class.split(":", 1)
        budget = policy.budget(budget_class)
        client_key = "jwt_sub" if kind == "user" else "remote_address"
        for window, limit in (("minute", budget.per_minute), ("hour", budget.per_hour)):
            if limit is None:
                continue
            descriptors.append(
                {
                    "entries": [
                        {"key": "generic_key", "value": window},
                        {"key": "rl_class", "value": rl_class},
                        # No value: one bucket per distinct client.
                        {"key": client_key},
                    ],
                    "token_bucket": {
                        "max_tokens": limit,
                        "tokens_per_fill": limit,
                        "fill_interval": f"{WINDOWS[window]}s",
                    },
                }
            )
    class_action = {
        "metadata": {
            "descriptor_key": "rl_class",
            "metadata_key": {"key": EDGE_METADATA, "path": [{"key": "rl_class"}]},
            "source": "ROUTE_ENTRY",
        }
    }
    subject_action = {
        "metadata": {
            "descriptor_key": "jwt_sub",
            "metadata_key": {"key": JWT_FILTER, "path": [{"key": "jwt_payload"}, {"key": "sub"}]},
            "source": "DYNAMIC",
        }
    }
    client_actions: list[dict[str, Any]] = [subject_action, {"remote_address": {}}]
    rate_limits = [
        {"actions": [{"generic_key": {"descriptor_value": window}}, class_action, client]}
        for window in WINDOWS
        for client in client_actions
    ]
    percent = {"numerator": 100, "denominator": "HUNDRED"}
    return {
        "name": "envoy.filters.http.local_ratelimit",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
            "stat_prefix": "edge_rate_limit",
            # Without these two nothing is enforced.
            "filter_enabled": {"runtime_key": "edge_rate_limit.enabled", "default_value": percent},
            "filter_enforced": {"runtime_key": "edge_rate_limit.enforced", "default_value": percent},
            "always_consume_default_token_bucket": False,
            "max_dynamic_descriptors": 10000,
            "rate_limited_as_resource_exhausted": True,
            "enable_x_ratelimit_headers": "DRAFT_VERSION_03",
            "descriptors": descriptors,
            "rate_limits": rate_limits,
        },
    }


def _file_sds(name: str, resource: Path) -> dict[str, Any]:
    return {"name": name, "sds_config": {"path_config_source": {"path": str(resource)}, "resource_api_version": "V3"}}


def sds_resources(tls: UpstreamTls) -> dict[Path, str]:
    """The SDS resource files `upstream_tls_socket` refers to, by path.

    They name the PEM files and the directory whose renames make Envoy read them again.
    """
    watched = {"path": str(tls.renewed_marker_dir)}
    identity = {
        "name": IDENTITY_SECRET,
        "tls_certificate": {
            "certificate_chain": {"filename": str(tls.cert)},
            "private_key": {"filename": str(tls.key)},
            "watched_directory": watched,
        },
    }
    ca = {
        "name": CA_SECRET,
        "validation_context": {"trusted_ca": {"filename": str(tls.ca)}, "watched_directory": watched},
    }
    return {
        path: yaml.safe_dump({"resources": [{"@type": SECRET_TYPE, **secret}]}, sort_keys=False)
        for path, secret in ((tls.identity_resource, identity), (tls.ca_resource, ca))
    }


def upstream_tls_socket(service: str, tls: UpstreamTls, mesh: MeshDeclaration) -> dict[str, Any]:
    """Present the edge identity; accept only the certificate of `service` (its SPIFFE id)."""
    spiffe = f"spiffe://{mesh.trust_domain}/ns/{mesh.namespace}/sa/{service}"
    return {
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
            "sni": service,
            "common_tls_context": {
                "alpn_protocols": ["h2"],
                "tls_certificate_sds_secret_configs": [_file_sds(IDENTITY_SECRET, tls.identity_resource)],
                "combined_validation_context": {
                    "default_validation_context": {
                        "match_typed_subject_alt_names": [{"san_type": "URI", "matcher": {"exact": spiffe}}],
                    },
                    "validation_context_sds_secret_config": _file_sds(CA_SECRET, tls.ca_resource),
                },
            },
        },
    }


def cluster(name: str, port: int, *, http2: bool = True) -> dict[str, Any]:
    definition: dict[str, Any] = {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [
                {
                    "lb_endpoints": [
                        {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}
                    ]
                }
            ],
        },
    }
    if http2:
        definition["typed_extension_protocol_options"] = {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}},
            }
        }
    return definition


def service_cluster(mesh: MeshDeclaration, name: str, settings: EdgeSettings) -> dict[str, Any]:
    definition = cluster(name, settings.upstream_ports[name])
    if settings.upstream_tls is not None:
        definition["transport_socket"] = upstream_tls_socket(name, settings.upstream_tls, mesh)
    return definition


def platform_cluster(mesh: MeshDeclaration, service: str, settings: EdgeSettings) -> dict[str, Any]:
    """The service again, for health and reflection only: its circuit breaker caps the open calls.

    A call beyond the cap is answered at once (503, UNAVAILABLE for gRPC) and never
    queued; the service's own API traffic has its own cluster and is not affected.
    """
    definition = service_cluster(mesh, service, settings)
    cap = settings.policy.platform_api.max_concurrent_streams
    definition["name"] = definition["load_assignment"]["cluster_name"] = platform_cluster_name(service)
    definition["circuit_breakers"] = {
        "thresholds": [{"priority": "DEFAULT", "max_requests": cap, "max_pending_requests": cap, "max_retries": 0}]
    }
    return definition


def admin_cluster(socket_path: Path) -> dict[str, Any]:
    """Envoy's own admin interface, over its Unix socket (for the metrics listener)."""
    return {
        "name": ADMIN_CLUSTER,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": ADMIN_CLUSTER,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"pipe": {"path": str(socket_path)}}}}]}],
        },
    }


# Client headers the services' gRPC servers would refuse as metadata: a name outside
# gRPC's alphabet (`a+b`), or a binary (`-bin`) value that may not be base64. gRPC
# fails such a call with INTERNAL before any of our code runs, so the edge drops them
# (none carries anything a service reads). Names arrive lower-cased; pseudo-headers
# (`:path`) are in the alphabet.
UNTRANSPORTABLE_REQUEST_HEADERS = (".*[^0-9a-z_.:-].*", ".*-bin")


def request_header_hygiene() -> list[dict[str, Any]]:
    """Request mutations dropping the headers of UNTRANSPORTABLE_REQUEST_HEADERS."""
    return [
        {"remove_on_match": {"key_matcher": {"safe_regex": {"regex": pattern}}}}
        for pattern in UNTRANSPORTABLE_REQUEST_HEADERS
    ]


def security_headers() -> dict[str, Any]:
    """First in the chain, so Envoy's own replies (401, 429, 413...) pass it too.

    It also drops request headers no gRPC server accepts (request_header_hygiene).
    """
    # nosniff always; a service may set its own caching for a public, cacheable answer.
    actions = {"x-content-type-options": "OVERWRITE_IF_EXISTS_OR_ADD", "cache-control": "ADD_IF_ABSENT"}
    add = [
        {"append": {"header": {"key": name, "value": value}, "append_action": actions[name]}}
        for name, value in SECURITY_HEADERS.items()
    ]
    return {
        "name": "envoy.filters.http.header_mutation",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation",
            "mutations": {
                "request_mutations": request_header_hygiene(),
                "response_mutations": [*add, {"remove": "server"}],
            },
        },
    }


def connection_options(policy: EdgePolicy) -> dict[str, Any]:
    """HCM settings against slow and greedy clients."""
    limits = policy.connections
    return {
        # The whole request head within this time (slowloris); streams themselves may live long.
        "request_headers_timeout": _seconds(limits.request_headers_timeout_seconds),
        "stream_idle_timeout": _seconds(limits.idle_timeout_seconds),
        "common_http_protocol_options": {
            "idle_timeout": _seconds(limits.idle_timeout_seconds),
            "headers_with_underscores_action": "REJECT_REQUEST",
        },
        "http2_protocol_options": {
            "max_concurrent_streams": limits.max_streams_per_connection,
            # Envoy's edge recommendations: small windows bound what one client makes us buffer.
            "initial_stream_window_size": 65536,
            "initial_connection_window_size": 1048576,
        },
        # No `server` header of ours (the header_mutation filter drops an upstream one).
        "server_header_transformation": "PASS_THROUGH",
    }


def overload_manager(policy: EdgePolicy) -> dict[str, Any]:
    limits = policy.connections
    heap = "envoy.resource_monitors.fixed_heap"
    return {
        "refresh_interval": "0.25s",
        "resource_monitors": [
            {
                "name": "envoy.resource_monitors.global_downstream_max_connections",
                "typed_config": {
                    "@type": "type.googleapis.com/"
                    "envoy.extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig",
                    "max_active_downstream_connections": limits.max_downstream_connections,
                },
            },
            {
                "name": heap,
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.resource_monitors.fixed_heap.v3.FixedHeapConfig",
                    "max_heap_size_bytes": limits.max_heap_bytes,
                },
            },
        ],
        "actions": [
            {"name": "envoy.overload_actions.shrink_heap", "triggers": [{"name": heap, "threshold": {"value": 0.95}}]},
            {
                "name": "envoy.overload_actions.stop_accepting_requests",
                "triggers": [{"name": heap, "threshold": {"value": 0.98}}],
            },
        ],
    }


def router() -> dict[str, Any]:
    return {
        "name": "envoy.filters.http.router",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router",
            # No x-envoy-upstream-service-time and friends: they tell clients about our internals.
            "suppress_envoy_headers": True,
        },
    }


def metrics_listener(settings: EdgeSettings) -> dict[str, Any]:
    """127.0.0.1:<metrics_port>: GET /ready and GET /stats/prometheus from admin, 404 otherwise."""
    exposed = [
        {
            "name": f"admin{path}",
            "match": {"path": path, "headers": [{"name": ":method", "string_match": {"exact": "GET"}}]},
            "route": {"cluster": ADMIN_CLUSTER, "timeout": "5s"},
        }
        for path in EXPOSED_ADMIN_PATHS
    ]
    refuse = {"name": "refuse", "match": {"prefix": "/"}, "direct_response": {"status": 404}}
    connection_manager = {
        "@type": HCM,
        "stat_prefix": "edge_metrics",
        "request_headers_timeout": _seconds(settings.policy.connections.request_headers_timeout_seconds),
        "server_header_transformation": "PASS_THROUGH",
        "route_config": {
            "name": "edge_metrics",
            "virtual_hosts": [
                {
                    "name": "metrics",
                    "domains": ["*"],
                    "routes": [*exposed, refuse],
                    "response_headers_to_remove": ["server"],
                }
            ],
        },
        "http_filters": [router()],
    }
    return {
        "name": "edge_metrics",
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": settings.metrics_port}},
        # Scrapes and readiness still answer when client connections hit the global cap.
        "ignore_global_conn_limit": True,
        "filter_chains": [
            {"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": connection_manager}]}
        ],
    }


def render(mesh: MeshDeclaration, settings: EdgeSettings) -> dict[str, Any]:
    """The whole bootstrap config as a dict."""
    policy = settings.policy
    if len(str(settings.admin_socket).encode()) > MAX_SOCKET_PATH:
        raise ValueError(f"admin socket path longer than {MAX_SOCKET_PATH} bytes: {settings.admin_socket}")
    unplaced = [name for name in mesh.services if name not in settings.upstream_ports]
    if unplaced:
        # Every declared service gets a cluster: one without an address is a stack bug, not a 503 later.
        raise ValueError(f"no upstream port for the declared services {unplaced}")
    platform_api = policy.platform_api.enabled(settings.profile)
    connection_manager = {
        "@type": HCM,
        "stat_prefix": "edge",
        "codec_type": "AUTO",
        # The client address is the TCP peer, never X-Forwarded-For: per-address limits cannot be spoofed.
        # No hop in front is trusted, and no peer counts as internal (internal_address_config stays
        # unset), so Envoy overwrites x-envoy-external-address with that peer on every request: the
        # users service records it as the login address (services/users/shopmesh_users/client.py).
        "use_remote_address": True,
        "xff_num_trusted_hops": 0,
        "normalize_path": True,
        "merge_slashes": True,
        "path_with_escaped_slashes_action": "REJECT_REQUEST",
        **connection_options(policy),
        "access_log": access_log(settings.access_log),
        "local_reply_config": local_reply_config(policy.api_version),
        "route_config": {
            "name": "edge",
            "max_direct_response_body_size_bytes": MAX_DIRECT_RESPONSE_BYTES,
            "virtual_hosts": [
                {
                    "name": "shopmesh",
                    "domains": ["*"],
                    "typed_per_filter_config": cors_policy(policy),
                    "routes": routes(
                        mesh, policy, platform_api=platform_api, openapi_document=settings.openapi_document
                    ),
                }
            ],
        },
        "http_filters": [
            security_headers(),
            {
                "name": "envoy.filters.http.buffer",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer",
                    "max_request_bytes": policy.max_request_bytes,
                },
            },
            transcoder(mesh, settings.descriptor, policy.max_request_bytes),
            {
                "name": "envoy.filters.http.cors",
                "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors"},
            },
            jwt_authn(settings),
            local_ratelimit(mesh, policy, platform_api=platform_api),
            router(),
        ],
    }
    return {
        "node": {"id": "shopmesh-edge", "cluster": "shopmesh-edge"},
        # Admin can change runtime settings and has no read-only mode: a Unix socket for its owner only.
        "admin": {"address": {"pipe": {"path": str(settings.admin_socket), "mode": 0o600}}},
        "overload_manager": overload_manager(policy),
        "static_resources": {
            "listeners": [
                {
                    "name": "edge",
                    "address": {"socket_address": {"address": "127.0.0.1", "port_value": settings.listen_port}},
                    "filter_chains": [
                        {
                            "filters": [
                                {
                                    "name": "envoy.filters.network.http_connection_manager",
                                    "typed_config": connection_manager,
                                }
                            ]
                        }
                    ],
                },
                metrics_listener(settings),
            ],
            "clusters": [
                *(service_cluster(mesh, name, settings) for name in mesh.services),
                *((platform_cluster(mesh, name, settings) for name in mesh.services) if platform_api else ()),
                # The edge itself over HTTP/1.1, for fetching the JWKS.
                cluster(JWKS_CLUSTER, settings.listen_port, http2=False),
                admin_cluster(settings.admin_socket),
            ],
        },
    }


def render_yaml(mesh: MeshDeclaration, settings: EdgeSettings) -> str:
    header = "# Rendered from mesh/mesh.yaml by envoy/shopmesh_edge/render.py. Do not edit.\n"
    return header + yaml.safe_dump(render(mesh, settings), sort_keys=False)
