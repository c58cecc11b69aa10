"""The users service through the edge (REST) and directly (gRPC), on the real stack."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid

import asyncpg
import grpc
import pytest

from shopmesh.user.v1 import user_service_pb2 as pb
from shopmesh.user.v1 import user_service_pb2_grpc
from shopmesh_stack.channels import channel
from shopmesh_stack.stack import Stack
from tests.integration.forged_tokens import FORGED_KINDS, forged
from tests.integration.helpers import http
from tests.integration.users_client import PASSWORD, call, grpc_get_me, register, unique_email, users_stub


def test_register_login_get_over_rest(stack: Stack) -> None:
    email = unique_email("rest")
    registered = register(stack, email)
    assert registered.email == email
    me = call(stack, "GET", f"/api/v1/users/{registered.id}", registered)
    assert me.status == 200, me.body
    profile = me.json()
    assert {profile["id"], profile["email"], profile["firstName"], profile["lastName"]} == {
        registered.id,
        email,
        "Ada",
        "Lovelace",
    }
    assert "createdAt" in profile
    assert "password" not in me.body.decode().lower()

    login = call(stack, "POST", "/api/v1/users/login", body={"email": email.upper(), "password": PASSWORD})
    assert login.status == 200, login.body
    body = login.json()
    assert body["user"]["id"] == registered.id and body["token"]
    assert call(stack, "GET", "/api/v1/users/me").status == 401  # no token
    fetched = http(stack, "GET", f"/api/v1/users/{registered.id}", headers={"Authorization": f"Bearer {body['token']}"})
    assert fetched.status == 200
    assert fetched.json()["lastLogin"]


def test_register_login_get_over_grpc(stack: Stack) -> None:
    channel, stub = users_stub(stack)
    with channel:
        email = unique_email("grpc")
        registered = stub.RegisterUser(
            pb.RegisterUserRequest(email=email.upper(), password=PASSWORD, first_name="Grace", last_name="Hopper"),
            timeout=10,
        )
        assert registered.user.email == email
        login = stub.Login(pb.LoginRequest(email=email, password=PASSWORD), timeout=10)
        me = stub.GetMe(pb.GetMeRequest(), metadata=(("authorization", f"Bearer {login.token}"),), timeout=10)
        assert me.id == registered.user.id
        assert me.role == pb.ROLE_CUSTOMER and me.account_status == pb.ACCOUNT_STATUS_ACTIVE
        by_id = stub.GetUser(
            pb.GetUserRequest(id=me.id), metadata=(("authorization", f"Bearer {registered.token}"),), timeout=10
        )
        assert by_id.email == email


def test_duplicate_email_is_409_also_differing_in_case(stack: Stack) -> None:
    email = unique_email("dup")
    register(stack, email)
    for variant in (email, email.upper(), email.capitalize()):
        reply = call(
            stack,
            "POST",
            "/api/v1/users/register",
            body={"email": variant, "password": PASSWORD, "firstName": "A", "lastName": "B"},
        )
        assert reply.status == 409, (variant, reply.body)
        assert reply.json()["details"][0]["reason"] == "EMAIL_TAKEN"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"email": "not-an-email", "password": PASSWORD, "firstName": "A", "lastName": "B"}, "email"),
        ({"email": "short@example.com", "password": "1234567", "firstName": "A", "lastName": "B"}, "password"),
        ({"email": "long@example.com", "password": "x" * 129, "firstName": "A", "lastName": "B"}, "password"),
        ({"email": "missing@example.com", "password": PASSWORD, "lastName": "B"}, "first_name"),
    ],
)
def test_invalid_registration_is_400_naming_the_field(stack: Stack, body: dict[str, str], field: str) -> None:
    reply = call(stack, "POST", "/api/v1/users/register", body=body)
    assert reply.status == 400, reply.body
    violations = [v for d in reply.json()["details"] if "fieldViolations" in d for v in d["fieldViolations"]]
    assert [v["field"] for v in violations] == [field]


def test_wrong_password_and_unknown_email_give_the_same_401(stack: Stack) -> None:
    account = register(stack)
    wrong_password = call(
        stack, "POST", "/api/v1/users/login", body={"email": account.email, "password": "wrong password"}
    )
    unknown_email = call(
        stack, "POST", "/api/v1/users/login", body={"email": unique_email("nobody"), "password": PASSWORD}
    )
    assert wrong_password.status == unknown_email.status == 401
    assert wrong_password.body == unknown_email.body


def test_user_a_cannot_read_or_update_user_b(stack: Stack) -> None:
    alice, bob = register(stack), register(stack)
    assert call(stack, "GET", f"/api/v1/users/{bob.id}", alice).status == 404
    update = call(stack, "PATCH", f"/api/v1/users/{bob.id}", alice, {"firstName": "Mallory"})
    assert update.status == 404
    assert call(stack, "GET", f"/api/v1/users/{bob.id}", bob).json()["firstName"] == "Ada"
    # Someone else's account and an account that does not exist look the same.
    missing_id = str(uuid.uuid4())
    missing = call(stack, "GET", f"/api/v1/users/{missing_id}", alice)
    hidden = call(stack, "GET", f"/api/v1/users/{bob.id}", alice)
    assert missing.status == 404
    assert missing.body.replace(missing_id.encode(), b"ID") == hidden.body.replace(bob.id.encode(), b"ID")


def test_update_cannot_set_status_role_or_id(stack: Stack) -> None:
    account = register(stack)
    path = f"/api/v1/users/{account.id}"
    # Fields the request message does not have are not part of the update.
    privileged = {"firstName": "Ada K.", "accountStatus": "ACCOUNT_STATUS_SUSPENDED", "role": "ROLE_ADMIN"}
    reply = call(stack, "PATCH", path, account, privileged)
    assert reply.status == 200, reply.body
    # An id in the body that differs from the path is refused outright.
    moved = call(stack, "PATCH", path, account, {"id": str(uuid.uuid4()), "bio": "moved"})
    assert moved.status == 400, moved.body
    profile = call(stack, "GET", path, account).json()
    assert profile["id"] == account.id
    assert profile["role"] == "ROLE_CUSTOMER"
    assert profile["accountStatus"] == "ACCOUNT_STATUS_ACTIVE"
    assert profile["bio"] == ""
    ok = call(stack, "PATCH", path, account, {"firstName": "Ada K.", "bio": "analyst"})
    assert ok.status == 200, ok.body
    assert (ok.json()["firstName"], ok.json()["bio"], ok.json()["lastName"]) == ("Ada K.", "analyst", "Lovelace")


@pytest.mark.parametrize("kind", FORGED_KINDS)
def test_bad_tokens_are_refused_by_the_service(stack: Stack, kind: str) -> None:
    account = register(stack)
    token = forged(stack, account.id, account.token)[kind]
    assert grpc_get_me(stack, token) == grpc.StatusCode.UNAUTHENTICATED
    assert grpc_get_me(stack, account.token) == grpc.StatusCode.OK


def test_admin_reads_anyone_and_suspends(stack: Stack) -> None:
    admin, victim, bystander = register(stack), register(stack), register(stack)
    promoted = subprocess.run(
        [sys.executable, "-m", "shopmesh_users.admin", "promote", admin.email.upper()],
        env={**os.environ, "SHOPMESH_DATABASE_URL": stack.postgres.dsn("users")},
        capture_output=True,
        text=True,
        check=False,
    )
    assert promoted.returncode == 0, promoted.stderr
    login = call(stack, "POST", "/api/v1/users/login", body={"email": admin.email, "password": PASSWORD}).json()
    admin_token = {"Authorization": f"Bearer {login['token']}"}
    assert http(stack, "GET", f"/api/v1/users/{victim.id}", headers=admin_token).status == 200
    # A customer may not suspend (role check), an admin may.
    assert call(stack, "POST", f"/api/v1/users/{victim.id}:suspend", bystander, {"reason": "x"}).status == 403
    suspended = http(stack, "POST", f"/api/v1/users/{victim.id}:suspend", '{"reason": "fraud"}', admin_token)
    assert suspended.status == 200, suspended.body
    assert suspended.json()["accountStatus"] == "ACCOUNT_STATUS_SUSPENDED"
    assert grpc_get_me(stack, victim.token) == grpc.StatusCode.UNAUTHENTICATED
    relogin = call(stack, "POST", "/api/v1/users/login", body={"email": victim.email, "password": PASSWORD})
    assert relogin.status == 403


def last_session_address(stack: Stack, user_id: str) -> str | None:
    """The client address recorded with the user's newest session."""

    async def read() -> str | None:
        connection = await asyncpg.connect(stack.postgres.dsn("users"))
        try:
            address: str | None = await connection.fetchval(
                "SELECT ip_address FROM user_sessions WHERE user_id = $1 ORDER BY id DESC LIMIT 1", uuid.UUID(user_id)
            )
            return address
        finally:
            await connection.close()

    return asyncio.run(read())


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Forwarded-For": "203.0.113.9"},
        # Without a forwarded chain the request would count as internal if loopback
        # were an internal address, and Envoy would then pass this header through.
        {"X-Envoy-External-Address": "203.0.113.7"},
        {"X-Forwarded-For": "203.0.113.9", "X-Envoy-External-Address": "203.0.113.7"},
    ],
)
def test_login_through_the_edge_records_the_address_envoy_saw(stack: Stack, headers: dict[str, str]) -> None:
    account = register(stack)
    body = json.dumps({"email": account.email, "password": PASSWORD})
    login = http(stack, "POST", "/api/v1/users/login", body, headers=headers)
    assert login.status == 200, login.body
    # Envoy overwrites x-envoy-external-address with the TCP peer it saw; what the
    # client wrote in either header is never recorded.
    assert last_session_address(stack, account.id) == "127.0.0.1"


@pytest.mark.parametrize(
    ("identity", "metadata", "recorded"),
    [
        # Only the edge's word is taken, and only a well-formed address.
        ("edge", {"x-envoy-external-address": "198.51.100.4"}, "198.51.100.4"),
        ("edge", {"x-envoy-external-address": "2001:DB8::1"}, "2001:db8::1"),
        ("edge", {"x-envoy-external-address": "198.51.100.4, 203.0.113.9"}, "127.0.0.1"),
        ("edge", {"x-envoy-external-address": "1" * 5000}, "127.0.0.1"),
        ("edge", {"x-forwarded-for": "203.0.113.9"}, "127.0.0.1"),
        # Anyone else is recorded at its own (gRPC peer) address, whatever it claims.
        ("developer", {"x-forwarded-for": "203.0.113.9", "x-envoy-external-address": "203.0.113.7"}, "127.0.0.1"),
    ],
)
def test_direct_login_records_the_peer_unless_the_edge_vouches(
    stack: Stack, identity: str, metadata: dict[str, str], recorded: str
) -> None:
    account = register(stack)
    with channel(stack.settings, "users", identity=identity) as chan:
        stub = user_service_pb2_grpc.UserServiceStub(chan)
        stub.Login(
            pb.LoginRequest(email=account.email, password=PASSWORD), metadata=tuple(metadata.items()), timeout=10
        )
    assert last_session_address(stack, account.id) == recorded
