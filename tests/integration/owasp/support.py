"""Small helpers for the OWASP modules: a service's gRPC stub called directly (mutual TLS,
developer identity) with a user token, HTTP to an edge from a chosen loopback address,
and the messages and fields of the contracts (from the descriptor set of `make gen`)."""

from __future__ import annotations

import http.client
import json
from collections.abc import Callable
from typing import Any

import grpc
from google.protobuf.descriptor import Descriptor, FieldDescriptor

from shopmesh_platform.mesh import load_mesh
from shopmesh_stack.channels import channel
from shopmesh_stack.stack import Stack
from tests.integration.grpc_inputs import load_pool
from tests.integration.helpers import HttpReply
from tests.integration.inventory_client import admin_account
from tests.integration.users_client import Account, patiently, register_patiently


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


def direct(
    stack: Stack,
    service: str,
    stub_type: Callable[[grpc.Channel], Any],
    method: str,
    request: Any,
    *,
    token: str | None = None,
    identity: str = "developer",
) -> tuple[grpc.StatusCode, Any]:
    """Call `method` on `service` directly as `identity`; (status, response or None)."""
    metadata = bearer(token) if token else ()
    with channel(stack.settings, service, identity=identity) as chan:
        try:
            response = getattr(stub_type(chan), method)(request, metadata=metadata, timeout=15)
        except grpc.RpcError as error:
            return error.code(), None
    return grpc.StatusCode.OK, response


def request_from(
    port: int,
    source: str,
    method: str,
    path: str,
    body: Any = None,
    *,
    account: Account | None = None,
    headers: dict[str, str] | None = None,
) -> HttpReply:
    """One HTTP/1.1 request to an edge on `port` from the loopback address `source` (its own budget buckets)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=15, source_address=(source, 0))
    try:
        data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        sent = {"Content-Type": "application/json", **(account.bearer if account else {}), **(headers or {})}
        connection.request(method, path, body=data, headers=sent)
        response = connection.getresponse()
        return HttpReply(response.status, dict(response.getheaders()), response.read())
    finally:
        connection.close()


def lower(headers: dict[str, str]) -> dict[str, str]:
    return {key.lower(): value for key, value in headers.items()}


def contract_messages(*, requests: bool) -> dict[str, Descriptor]:
    """Every message a declared method takes (`requests`) or returns, with the messages nested in them, by name."""
    pool = load_pool()
    found: dict[str, Descriptor] = {}

    def visit(descriptor: Descriptor) -> None:
        if descriptor.full_name in found:
            return
        found[descriptor.full_name] = descriptor
        for field in descriptor.fields:
            if field.message_type is not None:
                visit(field.message_type)

    for method in load_mesh().all_methods():
        rpc = pool.FindMethodByName(f"{method.full_name}.{method.name}")
        visit(rpc.input_type if requests else rpc.output_type)
    return found


def contract_fields(*, requests: bool) -> dict[str, FieldDescriptor]:
    """Every field of `contract_messages`, by full name (e.g. shopmesh.user.v1.User.email)."""
    return {
        field.full_name: field for message in contract_messages(requests=requests).values() for field in message.fields
    }


def new_account(stack: Stack, attempts: int = 3) -> Account:
    """A registered customer, retried with a new email when registration misses its deadline."""
    return register_patiently(stack, attempts)


def new_admin(stack: Stack, attempts: int = 3) -> Account:
    """An account promoted to admin and signed in again (its token carries the role); retried like `new_account`."""
    return patiently(lambda: admin_account(stack), attempts)
