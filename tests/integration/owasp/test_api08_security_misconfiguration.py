"""OWASP API8:2023 Security Misconfiguration.

What shopmesh does: the configuration that matters is rendered from one
declaration (mesh/mesh.yaml) and checked, not hand-edited. At the edge: CORS
answers only the declared origins (never `*`, since credentials are allowed) and
preflights for other origins get no CORS headers; every answer, Envoy's own
refusals included, carries `X-Content-Type-Options: nosniff` and
`Cache-Control: no-store` (unless a service sets its own caching) and no `server`
or `x-envoy-*` header; errors are google.rpc.Status JSON without internals. Envoy's
admin interface (which can change runtime settings) has no TCP port, only a Unix
socket of mode 0600; the metrics listener serves `GET /ready` and
`GET /stats/prometheus` and nothing else. Health and reflection through the edge
exist only in the `developer` profile; `production` has no route for them. Every
service speaks mutual TLS only.

What these tests prove: the CORS behaviour for allowed, foreign and credentialed
requests; the security headers on answers of every kind; that debug and admin
paths answer 404 on the edge and on its metrics port; that Envoy listens on TCP
only on its two ports and its admin socket is its owner's; that the production
routes have no health or reflection; that a plaintext client gets nothing from a
service; and that a malformed request's error says what was wrong and nothing of
the machinery.
"""

from __future__ import annotations

import json
import stat
import urllib.error
import urllib.request

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from shopmesh_edge.policy import load_edge_policy
from shopmesh_edge.render import PLATFORM_PREFIXES, routes
from shopmesh_platform.mesh import load_mesh
from shopmesh_stack.admin_socket import admin_get
from shopmesh_stack.stack import Stack
from tests.declared import SERVICES
from tests.integration.conftest import TEST_EXTRA_ORIGIN
from tests.integration.helpers import HttpReply, http
from tests.integration.owasp.support import lower, new_account
from tests.integration.test_edge import envoy_process, listening_tcp_ports
from tests.integration.users_client import PASSWORD, call

FOREIGN_ORIGIN = "https://evil.example"
DEBUG_PATHS = [
    ("GET", "/debug"),
    ("GET", "/debug/pprof/"),
    ("GET", "/admin"),
    ("GET", "/config_dump"),
    ("GET", "/clusters"),
    ("GET", "/server_info"),
    ("GET", "/runtime"),
    ("GET", "/stats"),
    ("GET", "/metrics"),
    ("GET", "/certs"),
    ("GET", "/.env"),
    ("GET", "/actuator/env"),
    ("GET", "/api/v1/debug"),
    ("POST", "/quitquitquit"),
    ("POST", "/logging?level=trace"),
    ("POST", "/runtime_modify?edge_rate_limit.enforced=0"),
    ("POST", "/healthcheck/fail"),
    ("TRACE", "/api/v1/products"),
]


def preflight(stack: Stack, origin: str, method: str = "GET") -> HttpReply:
    return http(
        stack,
        "OPTIONS",
        "/api/v1/orders",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": "authorization,content-type",
        },
    )


def test_cors_answers_only_the_declared_origins(stack: Stack) -> None:
    declared = load_edge_policy().cors
    assert "*" not in declared.allowed_origins
    for origin in [*declared.allowed_origins, TEST_EXTRA_ORIGIN]:
        headers = lower(preflight(stack, origin).headers)
        assert headers["access-control-allow-origin"] == origin
        assert "TRACE" not in headers["access-control-allow-methods"]
    # A foreign origin is not allowed: without Access-Control-Allow-Origin a browser refuses the
    # preflight (Envoy may still list the methods and headers it would allow).
    foreign = lower(preflight(stack, FOREIGN_ORIGIN).headers)
    assert "access-control-allow-origin" not in foreign, foreign
    # A real request from a foreign origin is not granted to the page either.
    simple = http(stack, "GET", "/api/v1/products?pageSize=1", headers={"Origin": FOREIGN_ORIGIN})
    assert simple.status == 200
    assert "access-control-allow-origin" not in lower(simple.headers)
    allowed = http(stack, "GET", "/api/v1/products?pageSize=1", headers={"Origin": declared.allowed_origins[0]})
    assert lower(allowed.headers)["access-control-allow-origin"] == declared.allowed_origins[0]


def test_every_kind_of_answer_carries_the_security_headers(stack: Stack) -> None:
    account = new_account(stack)
    answers = {
        "ok": call(stack, "GET", "/api/v1/users/me", account),
        "public": http(stack, "GET", "/api/v1/products?pageSize=1"),
        "token": http(stack, "POST", "/api/v1/users/login", json.dumps({"email": account.email, "password": PASSWORD})),
        "bad request": http(stack, "POST", "/api/v1/users/login", "{not json"),
        "unauthenticated": http(stack, "GET", "/api/v1/users/me"),
        "forbidden": call(stack, "POST", "/api/v1/products", account, {}),
        "not found": http(stack, "GET", "/no/such/path"),
        "too large": http(stack, "POST", "/api/v1/users/login", "x" * (load_edge_policy().max_request_bytes + 1)),
        "document": http(stack, "GET", "/api/v1/openapi.json"),
    }
    for name, reply in answers.items():
        headers = lower(reply.headers)
        assert headers.get("x-content-type-options") == "nosniff", (name, headers)
        assert headers.get("cache-control") == "no-store", (name, headers)
        assert "server" not in headers, (name, headers)
        assert not [key for key in headers if key.startswith("x-envoy")], (name, headers)
    assert [answers[n].status for n in ("bad request", "unauthenticated", "forbidden", "not found", "too large")] == [
        400,
        401,
        403,
        404,
        413,
    ]


def test_errors_say_what_was_wrong_and_nothing_of_the_machinery(stack: Stack) -> None:
    for reply in (
        http(stack, "POST", "/api/v1/users/login", '{"email": '),
        http(stack, "POST", "/api/v1/users/register", '{"email": 5, "password": []}'),
        http(stack, "GET", "/api/v1/products?pageSize=lots"),
        http(stack, "GET", "/api/v1/orders/../../etc/passwd"),
    ):
        assert 400 <= reply.status < 500, reply
        body = reply.json()
        assert set(body) <= {"code", "message", "details"}, body
        text = reply.body.decode()
        for leak in ("Traceback", ".py", "envoy", "grpc_json_transcoder", "/home/", "/tmp/", "site-packages"):
            assert leak not in text, (leak, text)


def metrics_port_status(port: int, method: str, path: str) -> int:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


@pytest.mark.parametrize(("method", "path"), DEBUG_PATHS)
def test_no_debug_or_admin_path_answers_on_the_edge(stack: Stack, method: str, path: str) -> None:
    assert http(stack, method, path).status == 404
    if method != "TRACE":
        assert metrics_port_status(stack.settings.ports.edge_metrics, method, path) == 404


def test_the_admin_interface_has_no_tcp_port(stack: Stack) -> None:
    ports = stack.settings.ports
    assert listening_tcp_ports(envoy_process(stack.edge)) == {ports.edge, ports.edge_metrics}
    mode = stack.edge.admin_socket.stat().st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600
    assert admin_get(stack.edge.admin_socket, "/ready") == (200, "LIVE\n")
    assert metrics_port_status(ports.edge_metrics, "GET", "/ready") == 200


def test_production_has_no_health_or_reflection_at_the_edge() -> None:
    policy = load_edge_policy()
    assert policy.platform_api.enabled("developer") and not policy.platform_api.enabled("production")
    table = routes(load_mesh(), policy, platform_api=policy.platform_api.enabled("production"))
    prefixes = [route["match"].get("prefix", route["match"].get("path", "")) for route in table]
    assert not [p for p in prefixes if p.startswith(PLATFORM_PREFIXES)], prefixes


@pytest.mark.parametrize("service", SERVICES)
def test_services_answer_nothing_without_mutual_tls(stack: Stack, service: str) -> None:
    address = f"127.0.0.1:{stack.settings.ports.grpc(service)}"
    with grpc.insecure_channel(address) as chan, pytest.raises(grpc.RpcError) as refused:
        health_pb2_grpc.HealthStub(chan).Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
