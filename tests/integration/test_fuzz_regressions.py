"""Failures the fuzzers found, each kept as its minimal input (test_fuzz_rest.py, test_fuzz_grpc.py).

- A request header gRPC cannot carry as metadata (a name outside its alphabet, a
  `-bin` value that is not base64) reached the service, whose gRPC server failed the
  call with INTERNAL before any of our code ran: HTTP 500 "Illegal header key". The
  edge now drops such headers.
- A malformed `grpc-timeout` or `grpc-encoding` failed the same way; the edge now
  refuses it with INVALID_ARGUMENT (HTTP 400).
- Request bytes that do not decode as the request type were UNKNOWN, naming a Python
  exception class; they are INVALID_ARGUMENT with reason MALFORMED_REQUEST
  (the platform's validation interceptor), directly and through the edge.
"""

from __future__ import annotations

import grpc
import pytest

from shopmesh_stack.channels import channel
from shopmesh_stack.stack import Stack
from tests.integration.fuzzing import error_reasons
from tests.integration.helpers import http
from tests.integration.test_fuzz_grpc import rich_status

PRODUCT = "/api/v1/products/prod-123"
GET_PRODUCT = "/shopmesh.inventory.v1.InventoryService/GetProduct"


@pytest.mark.parametrize(
    "header",
    [
        pytest.param({"8EvLHJR+": "x"}, id="name-outside-grpc-alphabet"),
        pytest.param({"x-b-bin": "!!!"}, id="bin-value-not-base64"),
    ],
)
def test_header_grpc_cannot_carry_is_dropped_at_the_edge(stack: Stack, header: dict[str, str]) -> None:
    reply = http(stack, "GET", PRODUCT, headers=header)
    assert reply.status == 200, reply.body
    assert reply.json()["id"] == "prod-123"


@pytest.mark.parametrize(
    ("header", "value"),
    [("grpc-timeout", "zz"), ("grpc-timeout", "123456789S"), ("grpc-encoding", "zz")],
)
def test_malformed_grpc_protocol_header_is_400(stack: Stack, header: str, value: str) -> None:
    reply = http(stack, "GET", PRODUCT, headers={header: value})
    assert reply.status == 400, reply.body
    assert reply.json() == {"code": 3, "message": f"malformed {header} header", "details": []}


def test_wellformed_grpc_protocol_headers_still_pass(stack: Stack) -> None:
    reply = http(stack, "GET", PRODUCT, headers={"grpc-timeout": "5S", "grpc-encoding": "identity"})
    assert reply.status == 200, reply.body


def test_undecodable_request_bytes_are_invalid_argument_directly(stack: Stack) -> None:
    with channel(stack.settings, "inventory") as chan, pytest.raises(grpc.RpcError) as caught:
        chan.unary_unary(GET_PRODUCT)(b"\xff\xff\xff", timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_reasons(rich_status(caught.value)) == ["MALFORMED_REQUEST"]


def test_undecodable_request_bytes_are_invalid_argument_through_the_edge(stack: Stack) -> None:
    edge = stack.settings.edge_url.removeprefix("http://")
    with grpc.insecure_channel(edge) as chan, pytest.raises(grpc.RpcError) as caught:
        chan.unary_unary(GET_PRODUCT)(b"\x0a\x01\xff", timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not a well-formed shopmesh.inventory.v1.GetProductRequest" in caught.value.details()


def test_a_nul_character_in_a_login_email_is_400_not_500(stack: Stack) -> None:
    """schemathesis found it: PostgreSQL cannot hold NUL in text, and the login's lookup answered 500."""
    reply = http(stack, "POST", "/api/v1/users/login", '{"email": "a\\u0000b@example.com", "password": "x"}')
    assert reply.status in (400, 401), reply.body
