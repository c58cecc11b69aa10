"""The secured edge: JWT verification at Envoy, per-client rate limits, body limit,
CORS, API and security headers, access logs that keep secrets out, connection
limits, health/reflection behind a budget and a stream cap (developer profile)
or absent (production), and admin only on a Unix socket."""

from __future__ import annotations

import asyncio
import json
import math
import os
import socket
import stat
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from shopmesh_edge.policy import load_edge_policy
from shopmesh_stack.admin_socket import admin_get
from shopmesh_stack.components import Edge
from shopmesh_stack.settings import StackSettings
from shopmesh_stack.stack import Stack
from tests.integration.conftest import TEST_EXTRA_ORIGIN
from tests.integration.extra_edge import edge_ports, port_env, running_edge
from tests.integration.forged_tokens import FORGED_KINDS, forged
from tests.integration.helpers import HttpReply, grpcurl, http
from tests.integration.users_client import PASSWORD, call, register
from tests.polling import eventually, wait_for


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


def login_body_of_size(size: int) -> str:
    """A login body of exactly `size` bytes (the password pads it; validation refuses it later)."""
    frame = json.dumps({"email": "big@example.com", "password": ""})
    body = json.dumps({"email": "big@example.com", "password": "x" * (size - len(frame))})
    assert len(body.encode()) == size
    return body


def test_body_limit_is_exactly_one_mebibyte_of_what_the_client_sends(stack: Stack) -> None:
    limit = load_edge_policy().max_request_bytes
    assert limit == 1024 * 1024
    at_limit = http(stack, "POST", "/api/v1/users/login", login_body_of_size(limit))
    # Past the edge: the service's validation answers (the password is far too long).
    assert at_limit.status == 400, at_limit.body[:200]
    assert "password" in at_limit.json()["message"]
    over = http(stack, "POST", "/api/v1/users/login", login_body_of_size(limit + 1))
    assert over.status == 413, over.body[:200]
    assert over.json() == {"code": 8, "message": "request body too large"}


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


HEADER_TIMEOUT_SECONDS = 1


@pytest.fixture(scope="module")
def limited_edge(stack: Stack) -> Iterator[Edge]:
    """A second Envoy in front of the same services, with budgets of 3 per minute and a
    request-header timeout of 1 second."""
    small = {"per_minute": 3, "per_hour": 1000}
    connections = replace(load_edge_policy().connections, request_headers_timeout_seconds=HEADER_TIMEOUT_SECONDS)
    overrides = json.dumps({"users": small, "users.Login": small, "users.RegisterUser": small, "platform_api": small})
    with running_edge(
        stack, "envoy-limited", rate_limits=overrides, policy_overrides={"connections": connections}
    ) as edge:
        yield edge


@pytest.fixture(scope="module")
def default_edge(stack: Stack) -> Iterator[Edge]:
    """A second Envoy with the budgets declared in mesh/mesh.yaml (no overrides)."""
    with running_edge(stack, "envoy-defaults", rate_limits="") as edge:
        yield edge


def post(edge: Edge, path: str, body: dict[str, str], source: str) -> HttpReply:
    """POST from a chosen loopback source address; the reply's status only."""
    data = json.dumps(body).encode()
    with socket.create_connection(("127.0.0.1", edge.port), timeout=10, source_address=(source, 0)) as sock:
        request = (
            f"POST {path} HTTP/1.1\r\nHost: edge\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n"
        ).encode() + data
        sock.sendall(request)
        status_line = sock.makefile("rb").readline().decode()
    return HttpReply(int(status_line.split()[1]), {}, b"")


def post_login(edge: Edge, email: str, source: str) -> int:
    """Login from a chosen loopback source address; returns the HTTP status."""
    return post(edge, "/api/v1/users/login", {"email": email, "password": PASSWORD}, source).status


def me(edge: Edge, token: str) -> HttpReply:
    request = urllib.request.Request(f"{edge.url}/api/v1/users/me", headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return HttpReply(response.status, dict(response.headers), response.read())
    except urllib.error.HTTPError as error:
        return HttpReply(error.code, dict(error.headers), error.read())


def get_me(edge: Edge, token: str) -> int:
    return me(edge, token).status


def first_refusal(call: Callable[[], HttpReply], per_minute: int, limit: int = 1000) -> HttpReply:
    """Call until the first 429 and return it.

    Fails unless exactly a minute's budget passed before it, give or take the
    tokens the bucket may have regained while the calls ran.
    """
    started = time.monotonic()
    for passed in range(limit):
        reply = call()
        if reply.status == 429:
            regained = math.ceil((time.monotonic() - started) * per_minute / 60)
            assert per_minute <= passed <= per_minute + regained, (passed, per_minute, regained)
            return reply
        assert reply.status < 500, reply
    raise AssertionError(f"no 429 within {limit} calls")


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


def test_default_budget_for_users_is_100_per_minute_per_subject(stack: Stack, default_edge: Edge) -> None:
    per_minute = load_edge_policy().budget("users").per_minute
    assert per_minute == 100
    alice, bob = register(stack), register(stack)
    refused = first_refusal(lambda: me(default_edge, alice.token), per_minute)
    assert refused.json()["code"] == 8
    # The refusing bucket is the minute one (the hour one allows 1000).
    assert {k.lower(): v for k, v in refused.headers.items()}["x-ratelimit-limit"] == str(per_minute)
    assert get_me(default_edge, bob.token) == 200  # another subject still passes


# Refused cheaply and never with 429 while within budget: a wrong password (401), a taken email (409).
ANONYMOUS_CALLS = {
    "Login": ("/api/v1/users/login", {"password": "wrong password"}),
    "RegisterUser": ("/api/v1/users/register", {"password": PASSWORD, "firstName": "A", "lastName": "B"}),
}


@pytest.mark.parametrize(("method", "source"), [("Login", "127.0.0.21"), ("RegisterUser", "127.0.0.22")])
def test_default_budget_for_login_and_register_is_10_per_minute_per_address(
    stack: Stack, default_edge: Edge, method: str, source: str
) -> None:
    per_minute = load_edge_policy().budget(f"users.{method}").per_minute
    assert per_minute == 10
    account = register(stack)
    path, fields = ANONYMOUS_CALLS[method]
    first_refusal(lambda: post(default_edge, path, {"email": account.email, **fields}, source), per_minute)
    assert post_login(default_edge, account.email, "127.0.0.23") == 200  # another address still passes


def test_rate_limits_from_the_environment_and_the_hour_window(stack: Stack) -> None:
    """SHOPMESH_EDGE_RATE_LIMITS as `make up` reads it; a generous minute, an hour of 3."""
    budgets = json.dumps({"users": {"per_minute": 1000, "per_hour": 3}})
    env = {
        **os.environ,
        "SHOPMESH_DATA_DIR": str(stack.settings.data_dir),
        "SHOPMESH_CACHE": str(stack.settings.cache_dir),
        **port_env(edge_ports(stack)),
        "SHOPMESH_EDGE_RATE_LIMITS": budgets,
    }
    settings = StackSettings.from_env(env)
    account = register(stack)
    with running_edge(stack, "envoy-hourly", settings=settings) as edge:
        assert [get_me(edge, account.token) for _ in range(3)] == [200, 200, 200]
        refused = me(edge, account.token)
        assert refused.status == 429
        assert {k.lower(): v for k, v in refused.headers.items()}["x-ratelimit-limit"] == "3"


def lower(headers: dict[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def test_answers_carry_security_headers_and_no_server_detail(stack: Stack) -> None:
    account = register(stack)
    login = json.dumps({"email": account.email, "password": PASSWORD})
    answers = {
        "authenticated": call(stack, "GET", "/api/v1/users/me", account),
        "token": http(stack, "POST", "/api/v1/users/login", login),
        "refused by envoy": http(stack, "GET", "/api/v1/users/me"),
        "unknown path": http(stack, "GET", "/no/such/path"),
        "edge health": http(stack, "GET", "/healthz"),
    }
    assert answers["authenticated"].status == 200 and answers["token"].status == 200
    for name, reply in answers.items():
        headers = lower(reply.headers)
        assert headers.get("x-content-type-options") == "nosniff", (name, headers)
        assert headers.get("cache-control") == "no-store", (name, headers)
        assert "server" not in headers, (name, headers)
        assert not [k for k in headers if k.startswith("x-envoy")], (name, headers)


def test_grpc_answers_carry_nosniff_too(stack: Stack) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{stack.settings.ports.edge}") as channel:
        _, rpc = health_pb2_grpc.HealthStub(channel).Check.with_call(health_pb2.HealthCheckRequest(), timeout=10)
        metadata = dict(rpc.initial_metadata())
    assert metadata.get("x-content-type-options") == "nosniff"
    assert "server" not in metadata


async def first_answer(call: grpc.aio.UnaryStreamCall, timeout: float) -> grpc.StatusCode | str:
    """ "open" if the stream delivered its first message, else its refusal status."""
    try:
        await asyncio.wait_for(call.read(), timeout)
    except grpc.aio.AioRpcError as error:
        return error.code()
    return "open"


async def test_watch_streams_beyond_the_cap_are_refused(stack: Stack) -> None:
    cap = stack.edge.policy().platform_api.max_concurrent_streams
    total = 500
    request = health_pb2.HealthCheckRequest(service="")
    held: list[grpc.aio.UnaryStreamCall] = []
    async with grpc.aio.insecure_channel(f"127.0.0.1:{stack.settings.ports.edge}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            for _ in range(cap):
                held.append(stub.Watch(request))
                assert await first_answer(held[-1], 30) == "open"
            extra = [stub.Watch(request) for _ in range(total - cap)]
            outcomes = await asyncio.gather(*(first_answer(c, 30) for c in extra))
            assert set(outcomes) == {grpc.StatusCode.UNAVAILABLE}, outcomes
            assert "too many open calls" in (await extra[0].details() or "")
            # The refusals did not disturb the streams already open.
            assert not [c for c in held if c.done()]
        finally:
            for c in held:
                c.cancel()

        # The cap counts open streams: once they are closed, a new one is admitted again.
        async def new_watch() -> grpc.StatusCode | str:
            probe = stub.Watch(request)
            try:
                return await first_answer(probe, 10)
            finally:
                probe.cancel()

        await eventually(new_watch, lambda outcome: outcome == "open", timeout=30, interval=0.2)


def health_check(port: int) -> grpc.StatusCode:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        try:
            health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        except grpc.RpcError as error:
            return error.code()
    return grpc.StatusCode.OK


def test_health_and_reflection_at_the_edge_have_a_budget_per_address(stack: Stack, limited_edge: Edge) -> None:
    statuses = [health_check(limited_edge.port) for _ in range(4)]
    assert statuses == [grpc.StatusCode.OK] * 3 + [grpc.StatusCode.RESOURCE_EXHAUSTED]


def test_a_client_must_send_its_request_headers_in_time(stack: Stack, limited_edge: Edge) -> None:
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", limited_edge.port), timeout=30) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: edge\r\n")  # never finished: slowloris
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert time.monotonic() - started < HEADER_TIMEOUT_SECONDS + 10


@pytest.fixture(scope="module")
def production_edge(stack: Stack) -> Iterator[Edge]:
    """An Envoy with the production profile: no health or reflection at the edge."""
    with running_edge(stack, "envoy-production", profile="production") as edge:
        yield edge


def test_production_profile_has_no_health_or_reflection_at_the_edge(stack: Stack, production_edge: Edge) -> None:
    listed = grpcurl(stack, "-plaintext", f"127.0.0.1:{production_edge.port}", "list")
    assert listed.returncode != 0
    assert "does not support the reflection API" in listed.stderr
    assert health_check(production_edge.port) == grpc.StatusCode.UNIMPLEMENTED
    # The API itself is served as in every profile.
    with urllib.request.urlopen(f"{production_edge.url}/.well-known/jwks.json", timeout=10) as response:
        assert json.load(response)["keys"]


def envoy_process(edge: Edge) -> int:
    """The Envoy process under the edge's keeper."""
    keeper = edge.process.pid()
    assert keeper is not None
    children = Path(f"/proc/{keeper}/task/{keeper}/children").read_text().split()
    assert len(children) == 1, children
    return int(children[0])


def listening_tcp_ports(pid: int) -> set[int]:
    """TCP ports a process listens on, from its open sockets and /proc/<pid>/net/tcp{,6}."""
    fd_dir = Path(f"/proc/{pid}/fd")
    inodes = set()
    for fd in fd_dir.iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    ports = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def test_admin_is_only_a_unix_socket_for_its_owner(stack: Stack) -> None:
    edge = stack.edge
    ports = stack.settings.ports
    assert listening_tcp_ports(envoy_process(edge)) == {ports.edge, ports.edge_metrics}
    mode = edge.admin_socket.stat().st_mode
    assert stat.S_ISSOCK(mode)
    assert stat.S_IMODE(mode) == 0o600
    assert admin_get(edge.admin_socket, "/ready") == (200, "LIVE\n")


def metrics_port_answer(port: int, method: str, path: str) -> tuple[int, str]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, ""


def test_metrics_port_exposes_only_ready_and_prometheus_stats(stack: Stack) -> None:
    port = stack.settings.ports.edge_metrics
    assert metrics_port_answer(port, "GET", "/ready") == (200, "LIVE\n")
    status, stats = metrics_port_answer(port, "GET", "/stats/prometheus")
    assert status == 200
    assert "envoy_cluster_upstream_rq_total" in stats
    for method, path in [
        ("POST", "/runtime_modify?edge_rate_limit.enforced=0"),
        ("POST", "/quitquitquit"),
        ("POST", "/logging?level=trace"),
        ("GET", "/config_dump"),
        ("GET", "/runtime"),
        ("GET", "/stats"),
        ("POST", "/stats/prometheus"),
    ]:
        assert metrics_port_answer(port, method, path)[0] == 404, (method, path)
    assert admin_get(stack.edge.admin_socket, "/runtime")[1].count("edge_rate_limit.enforced") == 0
