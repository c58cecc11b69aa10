"""The Envoy edge config, rendered with PyYAML from the mesh declaration.

One listener serves REST/JSON (HTTP/1.1, transcoded to gRPC by
grpc_json_transcoder from the descriptor set of `make gen`) and gRPC (h2c,
passed through) on the same port. Routes are per method, exact gRPC paths, with
the method's declared timeout; `internal` methods get no route, so the edge
cannot reach them. The REST mapping itself comes from the protos'
`google.api.http` rules, never from here. `/healthz` answers at the edge.
Health checks and reflection are routed by the `x-shopmesh-service` header
(default: users), since each service reflects only its own API.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from shopmesh_platform.mesh import AccessClass, MeshDeclaration

HTTP_CONNECTION_MANAGER = (
    "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
)
SERVICE_SELECTOR_HEADER = "x-shopmesh-service"
PLATFORM_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")
DEFAULT_PLATFORM_TARGET = "users"
ROUTER = {
    "name": "envoy.filters.http.router",
    "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
}


@dataclass(frozen=True)
class EdgeSettings:
    """What differs between instances: ports, files, limits."""

    listen_port: int
    admin_port: int
    upstream_ports: Mapping[str, int]
    descriptor: Path
    access_log: Path
    max_request_bytes: int = 1024 * 1024


def _seconds(value: float) -> str:
    return f"{value:g}s"


def access_log(path: Path) -> list[dict[str, Any]]:
    # Never Authorization, cookies or bodies: tokens and passwords stay out of logs.
    fields = {
        "time": "%START_TIME%",
        "method": "%REQ(:METHOD)%",
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


# Envoy's own replies (bad JSON, no route, upstream down or slow) as google.rpc.Status
# JSON for REST clients, like the services' errors. gRPC clients keep gRPC statuses.
LOCAL_REPLY_CODES = {
    400: (3, "%LOCAL_REPLY_BODY%"),
    404: (5, "not found"),
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


def local_reply_config() -> dict[str, Any]:
    mappers = []
    for status, (code, message) in LOCAL_REPLY_CODES.items():
        status_filter = {
            "status_code_filter": {
                "comparison": {
                    "op": "EQ",
                    "value": {"default_value": status, "runtime_key": f"edge.local_reply.{status}"},
                }
            }
        }
        mappers.append(
            {
                "filter": {"and_filter": {"filters": [status_filter, _REST_REQUEST]}},
                "body_format_override": {"json_format": {"code": code, "message": message}},
            }
        )
    return {"mappers": mappers}


def routes(mesh: MeshDeclaration) -> list[dict[str, Any]]:
    table: list[dict[str, Any]] = [
        {
            "name": "healthz",
            "match": {"path": "/healthz"},
            "direct_response": {"status": 200, "body": {"inline_string": "ok\n"}},
        }
    ]
    for service in mesh.services.values():
        for method in service.methods.values():
            if method.access is AccessClass.INTERNAL:
                continue
            table.append(
                {
                    "name": f"{service.name}.{method.name}",
                    "match": {"path": method.path},
                    "route": {"cluster": service.name, "timeout": _seconds(method.timeout_seconds)},
                }
            )
    for prefix in PLATFORM_PREFIXES:
        for service in mesh.services.values():
            table.append(
                {
                    "name": f"{service.name}.platform{prefix}",
                    "match": {
                        "prefix": prefix,
                        "headers": [{"name": SERVICE_SELECTOR_HEADER, "string_match": {"exact": service.name}}],
                    },
                    "route": {"cluster": service.name, "timeout": "0s"},
                }
            )
        table.append(
            {
                "name": f"default.platform{prefix}",
                "match": {"prefix": prefix},
                # Streaming (reflection, health Watch): no overall timeout.
                "route": {"cluster": DEFAULT_PLATFORM_TARGET, "timeout": "0s"},
            }
        )
    return table


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


def cluster(name: str, port: int) -> dict[str, Any]:
    return {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}},
            }
        },
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


def render(mesh: MeshDeclaration, settings: EdgeSettings) -> dict[str, Any]:
    """The whole bootstrap config as a dict."""
    connection_manager = {
        "@type": HTTP_CONNECTION_MANAGER,
        "stat_prefix": "edge",
        "codec_type": "AUTO",
        "normalize_path": True,
        "merge_slashes": True,
        "path_with_escaped_slashes_action": "REJECT_REQUEST",
        "access_log": access_log(settings.access_log),
        "local_reply_config": local_reply_config(),
        "route_config": {
            "name": "edge",
            "virtual_hosts": [{"name": "shopmesh", "domains": ["*"], "routes": routes(mesh)}],
        },
        "http_filters": [transcoder(mesh, settings.descriptor, settings.max_request_bytes), ROUTER],
    }
    return {
        "node": {"id": "shopmesh-edge", "cluster": "shopmesh-edge"},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": settings.admin_port}}},
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
                }
            ],
            "clusters": [cluster(name, settings.upstream_ports[name]) for name in mesh.services],
        },
    }


def render_yaml(mesh: MeshDeclaration, settings: EdgeSettings) -> str:
    header = "# Rendered from mesh/mesh.yaml by envoy/shopmesh_edge/render.py. Do not edit.\n"
    return header + yaml.safe_dump(render(mesh, settings), sort_keys=False)
