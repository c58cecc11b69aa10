"""Helpers for tests of the users service: accounts over REST, gRPC stubs, tokens."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc

from shopmesh.user.v1 import user_service_pb2 as pb
from shopmesh.user.v1 import user_service_pb2_grpc
from shopmesh_stack.channels import channel
from shopmesh_stack.stack import Stack
from tests.integration.helpers import HttpReply, http

T = TypeVar("T")

PASSWORD = "correct horse battery"


@dataclass(frozen=True)
class Account:
    id: str
    email: str
    token: str

    @property
    def bearer(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def unique_email(prefix: str = "user") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}@example.com"


def register(stack: Stack, email: str | None = None, password: str = PASSWORD, **extra: str) -> Account:
    email = email or unique_email()
    body = {"email": email, "password": password, "firstName": "Ada", "lastName": "Lovelace", **extra}
    reply = http(stack, "POST", "/api/v1/users/register", json.dumps(body))
    assert reply.status == 200, reply.body
    data = reply.json()
    return Account(data["user"]["id"], data["user"]["email"], data["token"])


def call(stack: Stack, method: str, path: str, account: Account | None = None, body: Any = None) -> HttpReply:
    headers = account.bearer if account else {}
    return http(stack, method, path, None if body is None else json.dumps(body), headers)


def users_stub(stack: Stack) -> tuple[grpc.Channel, user_service_pb2_grpc.UserServiceStub]:
    chan = channel(stack.settings, "users")
    return chan, user_service_pb2_grpc.UserServiceStub(chan)


def grpc_get_me(stack: Stack, token: str) -> grpc.StatusCode:
    """The status of GetMe called directly on the users service with `token`."""
    channel, stub = users_stub(stack)
    with channel:
        try:
            stub.GetMe(pb.GetMeRequest(), metadata=(("authorization", f"Bearer {token}"),), timeout=10)
        except grpc.RpcError as error:
            return error.code()
    return grpc.StatusCode.OK


def patiently(make: Callable[[], T], attempts: int = 3) -> T:
    """`make()`, tried again when it fails an assertion: registering hashes a password (argon2id),
    which a loaded machine may not finish within the method's deadline; each attempt uses a new email."""
    for _ in range(attempts - 1):
        try:
            return make()
        except AssertionError:
            continue
    return make()


def register_patiently(stack: Stack, attempts: int = 3) -> Account:
    """A new customer, registered `patiently`."""
    return patiently(lambda: register(stack), attempts)
