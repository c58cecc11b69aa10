"""The secured edge: JWT verification at Envoy, per-client rate limits, body limit,
CORS, API headers and access logs that keep secrets out."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from shopmesh_stack.components import Edge
from shopmesh_stack.settings import Ports
from shopmesh_stack.stack import Stack
from tests.integration.conftest import TEST_EXTRA_ORIGIN
from tests.integration.forged_tokens import FORGED_KINDS, forged
from tests.integration.helpers import HttpReply, http
from tests.integration.users_client import PASSWORD, call, register
from tests.polling import wait_for


@pytest.mark.parametrize("kind", FORGED_KINDS)
def test_bad_tokens_get_401_at_the_edge(stack: Stack, kind: str) -> None:
    account = register(stack)
    token = forged(stack, account.id, account.token)[kind]
    reply = http(stack, "GET", "/api/v1/users/me", headers={"Authorization": f"Bearer {token}"})
    assert reply.status == 401, reply.body
    body = reply.json()
    assert body["code"] == 16
    assert "Jwt" in body["message"]  # answered by Envoy's jwt_authn, not by the service


def test_missing_token_is_401_at_the_edge_and_public_routes_need_none(stack: Stack) -> None:
    assert http(stack, "GET", "/api/v1/users/me").status == 401
    assert http(stack, "GET", "/api/v1/orders").status == 401
    jwks = http(stack, "GET", "/.well-known/jwks.json")
    assert jwks.status == 200
    assert jwks.json()["keys"][0]["alg"] == "EdDSA"
    assert http(stack, "GET", "/healthz").status == 200


def test_valid_token_passes_and_responses_carry_api_headers(stack: Stack) -> None:
    account = register(stack)
    reply = call(stack, "GET", "/api/v1/users/me", account)
    assert reply.status == 200, reply.body
    headers = {k.lower(): v for k, v in reply.headers.items()}
    assert headers["x-api-version"] == "v1"
    assert headers["x-service-name"] == "users"
    refused = http(stack, "GET", "/api/v1/users/me")
    assert {k.lower(): v for k, v in refused.headers.items()}["x-api-version"] == "v1"


def test_oversized_body_is_413(stack: Stack) -> None:
    huge = json.dumps(
        {"email": "big@example.com", "password": PASSWORD, "firstName": "x" * (2 * 1024 * 1024), "lastName": "y"}
    )
    reply = http(stack, "POST", "/api/v1/users/register", huge)
    assert reply.status == 413
    assert reply.json()["code"] == 8


def preflight(stack: Stack, origin: str) -> HttpReply:
    return http(
        stack,
        "OPTIONS",
        "/api/v1/users/me",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization",
        },
    )


@pytest.mark.parametrize("origin", ["http://localhost:3000", TEST_EXTRA_ORIGIN])
def test_cors_preflight_from_an_allowed_origin(stack: Stack, origin: str) -> None:
    reply = preflight(stack, origin)
    assert reply.status == 200
    headers = {k.lower(): v for k, v in reply.headers.items()}
    assert headers["access-control-allow-origin"] == origin
    assert headers["access-control-allow-credentials"] == "true"
    assert headers["access-control-max-age"] == "3600"
    assert "authorization" in headers["access-control-allow-headers"]
    assert "PATCH" in headers["access-control-allow-methods"]
    assert headers["access-control-expose-headers"] == "X-Auth-Token"


def test_cors_preflight_from_another_origin_gets_no_cors_headers(stack: Stack) -> None:
    reply = preflight(stack, "https://evil.example")
    assert "access-control-allow-origin" not in {k.lower() for k in reply.headers}, reply.headers


def test_access_log_keeps_tokens_and_passwords_out(stack: Stack) -> None:
    account = register(stack, password="unmistakable-secret-pw")
    marker = f"/api/v1/users/{account.id}"
    assert call(stack, "GET", marker, account).status == 200
    log_file = stack.settings.log_dir / "envoy-access.log"
    # Envoy flushes access logs periodically.
    wait_for(lambda: marker in log_file.read_text(), 15, "request in the access log")
    log = log_file.read_text()
    assert account.token not in log
    assert account.token.split(".")[2] not in log
    assert "unmistakable-secret-pw" not in log
    entry = json.loads(log.strip().splitlines()[-1])
    assert {"status", "path", "request_id", "duration_ms"} <= set(entry)


@pytest.fixture(scope="module")
def limited_edge(stack: Stack) -> Iterator[Edge]:
    """A second Envoy in front of the same services, with budgets of 3 per minute."""
    small = {"per_minute": 3, "per_hour": 1000}
    ports = Ports.free()
    edge = Edge(
        stack.settings,
        stack.installed,
        name="envoy-limited",
        listen_port=ports.edge,
        admin_port=ports.envoy_admin,
        rate_limit_overrides=json.dumps({"users": small, "users.Login": small, "users.RegisterUser": small}),
    )
    stack.start(edge)
    try:
        yield edge
    finally:
        stack.stop(edge)


def post_login(edge: Edge, email: str, source: str) -> int:
    """Login from a chosen loopback source address; returns the HTTP status."""
    body = json.dumps({"email": email, "password": PASSWORD}).encode()
    with socket.create_connection(("127.0.0.1", edge.port), timeout=10, source_address=(source, 0)) as sock:
        request = (
            f"POST /api/v1/users/login HTTP/1.1\r\nHost: edge\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode() + body
        sock.sendall(request)
        status_line = sock.makefile("rb").readline().decode()
    return int(status_line.split()[1])


def get_me(edge: Edge, token: str) -> int:
    request = urllib.request.Request(f"{edge.url}/api/v1/users/me", headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


def test_rate_limit_per_token_subject(stack: Stack, limited_edge: Edge) -> None:
    alice, bob = register(stack), register(stack)
    assert [get_me(limited_edge, alice.token) for _ in range(3)] == [200, 200, 200]
    assert get_me(limited_edge, alice.token) == 429
    assert get_me(limited_edge, bob.token) == 200  # another client still passes


def test_rate_limit_per_client_address_on_anonymous_routes(stack: Stack, limited_edge: Edge) -> None:
    account = register(stack)
    statuses = [post_login(limited_edge, account.email, "127.0.0.1") for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    assert post_login(limited_edge, account.email, "127.0.0.2") == 200  # another address still passes
