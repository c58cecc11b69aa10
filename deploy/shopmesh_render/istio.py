"""Istio resources (`security.istio.io/v1`, `networking.istio.io/v1`) from the declaration.

- PeerAuthentication STRICT for the whole namespace.
- AuthorizationPolicy: an empty ALLOW policy for the namespace (Istio's default
  deny: a workload with any ALLOW policy refuses what none allows), one ALLOW
  policy per service whose rules are exactly the local auth interceptor's matrix
  (`allow_matrix`), and the edge's: the ingress gateway may call it, every mesh
  workload may fetch the JWKS through it, and `user` routes need a request principal.
- RequestAuthentication: the users service's issuer and its in-mesh JWKS URI.
- Gateway (TLS from a Secret, HTTP redirected to HTTPS) and VirtualServices:
  ingress -> edge per route, and edge/services -> service per method, with the
  declared timeouts; retries only for idempotent methods, none otherwise (Istio
  retries twice by default, which would repeat a non-idempotent call).
- DestinationRules: the declared load balancer, a connection pool and outlier
  detection (`consecutive5xxErrors`; Istio has no `circuitBreaker` field).
- The fault-injection overlay (0.1 % of users calls delayed 5 s), opt-in.
"""

from __future__ import annotations

from typing import Any

from shopmesh_edge.render import server_streaming_paths
from shopmesh_platform.interceptors.auth import PLATFORM_SERVICE_PREFIXES
from shopmesh_platform.mesh import AccessClass, LoadBalancer, MethodDecl
from shopmesh_render.cluster import (
    EDGE,
    EDGE_PORT,
    GATEWAY_TLS_SECRET,
    INGRESS_GATEWAY_SELECTOR,
    JWT_AUDIENCE,
    JWT_ISSUER,
    Cluster,
)
from shopmesh_render.routes import RestRoute

SECURITY = "security.istio.io/v1"
NETWORKING = "networking.istio.io/v1"
GATEWAY = "shopmesh-gateway"
JWKS_PATH = "/.well-known/jwks.json"
# Retries only where a repeat is harmless (idempotent methods), on failures that
# say the call did not run or may safely run again. The original retried users
# calls 3 times, 2 s each, on connect errors.
RETRY_ON = "connect-failure,refused-stream,unavailable,reset"
RETRY_ATTEMPTS = 3
PER_TRY_TIMEOUT_SECONDS = 2.0
FAULT_DELAY = {"percentage": {"value": 0.1}, "fixedDelay": "5s"}
LOAD_BALANCERS = {
    LoadBalancer.ROUND_ROBIN: "ROUND_ROBIN",
    LoadBalancer.LEAST_REQUEST: "LEAST_REQUEST",
    LoadBalancer.RANDOM: "RANDOM",
}

Object = dict[str, Any]


def _meta(cluster: Cluster, name: str, **extra: Any) -> Object:
    return {"name": name, "namespace": cluster.namespace, **extra}


def _seconds(value: float) -> str:
    return f"{value:g}s"


def allow_matrix(cluster: Cluster, method: MethodDecl) -> frozenset[str]:
    """The identities the local auth interceptor lets call `method` (shopmesh_platform.interceptors.auth).

    `internal`: its callers. `public`/`user`: the front door, plus declared service
    callers unless the method takes roles (a service has no role). A `user`
    method also needs a token, which the interceptor checks after the identity.
    """
    mesh = cluster.mesh
    if method.access is AccessClass.INTERNAL:
        return method.callers
    service_callers = frozenset() if method.roles else method.callers
    return mesh.front_door | service_callers


def peer_authentication(cluster: Cluster) -> Object:
    return {
        "apiVersion": SECURITY,
        "kind": "PeerAuthentication",
        "metadata": _meta(cluster, "default"),
        "spec": {"mtls": {"mode": "STRICT"}},
    }


def default_deny(cluster: Cluster) -> Object:
    # An ALLOW policy with no rules matches nothing: every workload denies all
    # that another ALLOW policy does not allow.
    return {
        "apiVersion": SECURITY,
        "kind": "AuthorizationPolicy",
        "metadata": _meta(cluster, "default-deny"),
        "spec": {},
    }


def service_authorization(cluster: Cluster, service: str) -> Object:
    """One ALLOW rule per set of callers: the methods those identities may call."""
    decl = cluster.mesh.service(service)
    by_callers: dict[tuple[frozenset[str], bool], list[str]] = {}
    for method in decl.methods.values():
        # `user` methods from the front door also need a request principal (a valid JWT).
        front_door_user = method.access is AccessClass.USER
        identities = allow_matrix(cluster, method)
        door = identities & cluster.mesh.front_door
        others = identities - door
        if door:
            by_callers.setdefault((frozenset(door), front_door_user), []).append(method.path)
        if others:
            by_callers.setdefault((frozenset(others), False), []).append(method.path)
    rules: list[Object] = []
    for (identities, needs_token), paths in sorted(by_callers.items(), key=lambda item: sorted(item[0][0])):
        source: Object = {"principals": [cluster.principal(i) for i in sorted(identities)]}
        if needs_token:
            source["requestPrincipals"] = [f"{JWT_ISSUER}/*"]
        rules.append({"from": [{"source": source}], "to": [{"operation": {"paths": paths}}]})
    # Health checks and reflection: the front door, as the interceptor allows.
    rules.append(
        {
            "from": [{"source": {"principals": [cluster.principal(i) for i in sorted(cluster.mesh.front_door)]}}],
            "to": [{"operation": {"paths": [f"{prefix}*" for prefix in PLATFORM_SERVICE_PREFIXES]}}],
        }
    )
    return {
        "apiVersion": SECURITY,
        "kind": "AuthorizationPolicy",
        "metadata": _meta(cluster, service),
        "spec": {"selector": {"matchLabels": {"app": service}}, "action": "ALLOW", "rules": rules},
    }


def edge_authorization(cluster: Cluster) -> Object:
    workloads = [*cluster.mesh.services, EDGE]
    return {
        "apiVersion": SECURITY,
        "kind": "AuthorizationPolicy",
        "metadata": _meta(cluster, EDGE),
        "spec": {
            "selector": {"matchLabels": {"app": EDGE}},
            "action": "ALLOW",
            "rules": [
                # The public entrance: everything the ingress gateway forwards.
                {"from": [{"source": {"principals": [cluster.ingress_gateway_principal]}}]},
                # The sidecars fetch the JWKS for RequestAuthentication (PILOT_JWT_ENABLE_REMOTE_JWKS=envoy).
                {
                    "from": [{"source": {"principals": [cluster.principal(w) for w in workloads]}}],
                    "to": [{"operation": {"methods": ["GET"], "paths": [JWKS_PATH]}}],
                },
            ],
        },
    }


def edge_requires_token(cluster: Cluster, routes: list[RestRoute]) -> Object:
    """DENY, at the edge, a `user` route (REST or gRPC) called without a valid JWT."""
    user_methods = [m for m in cluster.mesh.all_methods() if m.access is AccessClass.USER]
    operations: list[Object] = [{"operation": {"paths": [m.path for m in user_methods]}}]
    by_verb: dict[str, list[str]] = {}
    for route in routes:
        if route.method.access is AccessClass.USER:
            paths = by_verb.setdefault(route.verb, [])
            if route.authorization_path not in paths:
                paths.append(route.authorization_path)
    operations += [{"operation": {"methods": [verb], "paths": paths}} for verb, paths in sorted(by_verb.items())]
    return {
        "apiVersion": SECURITY,
        "kind": "AuthorizationPolicy",
        "metadata": _meta(cluster, "edge-require-token"),
        "spec": {
            "selector": {"matchLabels": {"app": EDGE}},
            "action": "DENY",
            "rules": [{"from": [{"source": {"notRequestPrincipals": ["*"]}}], "to": operations}],
        },
    }


def request_authentication(cluster: Cluster) -> Object:
    return {
        "apiVersion": SECURITY,
        "kind": "RequestAuthentication",
        "metadata": _meta(cluster, "users-jwt"),
        "spec": {
            "jwtRules": [
                {
                    "issuer": JWT_ISSUER,
                    "audiences": [JWT_AUDIENCE],
                    # Keys rotate: fetched (by the sidecars, PILOT_JWT_ENABLE_REMOTE_JWKS=envoy), never inlined.
                    "jwksUri": cluster.jwks_uri,
                    "forwardOriginalToken": True,
                }
            ]
        },
    }


def gateway(cluster: Cluster) -> Object:
    return {
        "apiVersion": NETWORKING,
        "kind": "Gateway",
        "metadata": _meta(cluster, GATEWAY),
        "spec": {
            "selector": INGRESS_GATEWAY_SELECTOR,
            "servers": [
                {
                    "port": {"number": 443, "name": "https", "protocol": "HTTPS"},
                    "hosts": ["*"],
                    "tls": {"mode": "SIMPLE", "credentialName": GATEWAY_TLS_SECRET, "minProtocolVersion": "TLSV1_2"},
                },
                {
                    "port": {"number": 80, "name": "http", "protocol": "HTTP"},
                    "hosts": ["*"],
                    "tls": {"httpsRedirect": True},
                },
            ],
        },
    }


def retries(method: MethodDecl) -> Object:
    if not method.idempotent:
        return {"attempts": 0}
    per_try = min(PER_TRY_TIMEOUT_SECONDS, method.timeout_seconds)
    return {"attempts": RETRY_ATTEMPTS, "perTryTimeout": _seconds(per_try), "retryOn": RETRY_ON}


def _route(name: str, match: list[Object], destination: str, port: int, method: MethodDecl) -> Object:
    # A server stream (WatchNotifications) lives until the client leaves: "0s" is no timeout.
    streaming = method.path in server_streaming_paths()
    return {
        "name": name,
        "match": match,
        "route": [{"destination": {"host": destination, "port": {"number": port}}}],
        "timeout": "0s" if streaming else _seconds(method.timeout_seconds),
        "retries": retries(method),
    }


def ingress_virtual_service(cluster: Cluster, routes: list[RestRoute]) -> Object:
    """Ingress gateway -> edge: per-route timeouts and retries, REST and gRPC alike."""
    edge = cluster.host(EDGE)
    http: list[Object] = []
    for route in routes:
        if route.method.access is AccessClass.INTERNAL:
            continue
        match = [{"uri": {"regex": route.regex}, "method": {"exact": route.verb}}]
        name = f"{route.method.service}.{route.method.name}.{route.verb.lower()}"
        http.append(_route(name, match, edge, EDGE_PORT, route.method))
    for method in cluster.mesh.all_methods():
        if method.access is not AccessClass.INTERNAL:
            http.append(
                _route(
                    f"{method.service}.{method.name}.grpc", [{"uri": {"exact": method.path}}], edge, EDGE_PORT, method
                )
            )
    # Everything else (health, CORS preflights, unknown paths): the edge answers; no retries.
    http.append(
        {
            "name": "edge-default",
            "route": [{"destination": {"host": edge, "port": {"number": EDGE_PORT}}}],
            "timeout": _seconds(cluster.mesh.default_timeout_seconds),
            "retries": {"attempts": 0},
        }
    )
    return {
        "apiVersion": NETWORKING,
        "kind": "VirtualService",
        "metadata": _meta(cluster, EDGE),
        "spec": {"hosts": ["*"], "gateways": [GATEWAY], "http": http},
    }


def service_virtual_service(cluster: Cluster, service: str, *, fault: bool = False) -> Object:
    """Calls inside the mesh (edge and services -> `service`): per-method timeouts and retries."""
    decl = cluster.mesh.service(service)
    host = cluster.host(service)
    http = [
        _route(method.name, [{"uri": {"exact": method.path}}], host, decl.grpc_port, method)
        for method in decl.methods.values()
    ]
    http.append(
        {
            "name": "platform",
            "route": [{"destination": {"host": host, "port": {"number": decl.grpc_port}}}],
            "retries": {"attempts": 0},
        }
    )
    if fault:
        for route in http:
            route["fault"] = {"delay": dict(FAULT_DELAY)}
    return {
        "apiVersion": NETWORKING,
        "kind": "VirtualService",
        "metadata": _meta(cluster, service),
        "spec": {"hosts": [host], "gateways": ["mesh"], "http": http},
    }


def destination_rule(cluster: Cluster, service: str) -> Object:
    decl = cluster.mesh.service(service)
    return {
        "apiVersion": NETWORKING,
        "kind": "DestinationRule",
        "metadata": _meta(cluster, service),
        "spec": {
            "host": cluster.host(service),
            "trafficPolicy": {
                "loadBalancer": {"simple": LOAD_BALANCERS[decl.load_balancer]},
                "connectionPool": {
                    "tcp": {"maxConnections": 100, "connectTimeout": "1s"},
                    "http": {"http2MaxRequests": 1000, "maxRequestsPerConnection": 0, "idleTimeout": "300s"},
                },
                "outlierDetection": {
                    "consecutive5xxErrors": 5,
                    "interval": "10s",
                    "baseEjectionTime": "30s",
                    "maxEjectionPercent": 50,
                },
            },
        },
    }


def render(cluster: Cluster, routes: list[RestRoute]) -> dict[str, list[Object]]:
    """File name (under istio/) -> its objects."""
    services = list(cluster.mesh.services)
    return {
        "peer-authentication.yaml": [peer_authentication(cluster)],
        "authorization-policies.yaml": [
            default_deny(cluster),
            *(service_authorization(cluster, s) for s in services),
            edge_authorization(cluster),
            edge_requires_token(cluster, routes),
        ],
        "request-authentication.yaml": [request_authentication(cluster)],
        "gateway.yaml": [gateway(cluster), ingress_virtual_service(cluster, routes)],
        "virtual-services.yaml": [service_virtual_service(cluster, s) for s in services],
        "destination-rules.yaml": [destination_rule(cluster, s) for s in services],
    }


def fault_overlay(cluster: Cluster) -> Object:
    """The users VirtualService with the original's fault injection (a kustomize patch)."""
    return service_virtual_service(cluster, "users", fault=True)
