"""gRPC fuzzing: every method of every service, called directly over mutual TLS with
request bytes Hypothesis invents from the descriptor set (tests/integration/grpc_inputs.py:
arbitrary well-formed messages, random garbage, and deliberately malformed wire
encodings), each as the caller the mesh declaration lets in:

- `public` and `user` methods as the developer identity, `user` ones with an admin's
  token (so calls get past the role checks to the input rules and handlers; Logout
  gets a fresh session per call, so it never revokes the token of the others);
- `internal` methods with the certificate of their first declared caller.

What it proves, for every call:
- no INTERNAL and no UNKNOWN status (bad input is the client's error, never a crash
  of the handler or of the server's decoding);
- UNIMPLEMENTED only from a method not built yet, and only as the platform's
  NOT_IMPLEMENTED (tests/integration/fuzzing.py: the rule ends by itself once a
  servicer defines the method);
- no stack trace or source path in the status message or in any string of the
  google.rpc.Status details;
and after all calls: every service still runs as the same process (pids unchanged)
and answers health SERVING.

Server-streaming methods are read to their end; client-streaming ones get a few
messages. Unary is all the contracts have today.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import grpc
import pytest
from google.protobuf.descriptor import MethodDescriptor
from google.rpc import status_pb2
from hypothesis import given

from shopmesh.user.v1 import user_service_pb2 as user_pb
from shopmesh.user.v1 import user_service_pb2_grpc as user_grpc
from shopmesh_platform.mesh import AccessClass, MeshDeclaration, MethodDecl, load_mesh
from shopmesh_stack.channels import channel, health_status
from shopmesh_stack.stack import Stack
from tests.integration.fuzzing import FuzzBudget, is_not_implemented_status, unbuilt_methods
from tests.integration.grpc_inputs import INPUT_KINDS, load_pool, request_bytes, service_methods
from tests.integration.inventory_client import admin_account
from tests.integration.users_client import PASSWORD, Account

SERVING = 1
CALL_TIMEOUT_SECONDS = 20
# A response stream that accepted its request stays open (WatchNotifications waits for news):
# after this long the client leaves; DEADLINE_EXCEEDED then means "open", not a failure.
STREAM_OPEN_SECONDS = 1.5
STATUS_DETAILS_KEY = "grpc-status-details-bin"
FORBIDDEN_CODES = frozenset({grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN})
# What a leaked stack trace or source location looks like.
LEAK = re.compile(r"Traceback|File \"|\.py\b|/(?:usr|home|tmp|work|opt|root|site-packages)/")
LOGOUT = "/shopmesh.user.v1.UserService/Logout"
STREAM_MESSAGES = 3


class FuzzFailure(AssertionError):
    """A call whose answer breaks one of the properties of the module docstring."""


def status_strings(error: grpc.RpcError) -> list[str]:
    """The status message and every string in its google.rpc.Status details."""
    strings = [error.details() or ""]
    for key, value in error.trailing_metadata() or ():
        if key == STATUS_DETAILS_KEY:
            status = status_pb2.Status.FromString(value)
            strings.append(status.message)
            strings += [str(detail) for detail in status.details]
    return strings


def rich_status(error: grpc.RpcError) -> status_pb2.Status:
    for key, value in error.trailing_metadata() or ():
        if key == STATUS_DETAILS_KEY:
            return status_pb2.Status.FromString(value)
    return status_pb2.Status()


def judge(method: MethodDecl, error: grpc.RpcError, unbuilt: frozenset[str]) -> None:
    """Raise FuzzFailure if the refusal breaks a property."""
    code = error.code()
    where = f"{method.path}: {code.name} {error.details()!r}"
    if code in FORBIDDEN_CODES:
        raise FuzzFailure(where)
    if code is grpc.StatusCode.UNIMPLEMENTED and not (
        method.path in unbuilt and is_not_implemented_status(rich_status(error))
    ):
        raise FuzzFailure(f"UNIMPLEMENTED from a built method or not the platform's answer: {where}")
    for text in status_strings(error):
        if LEAK.search(text):
            raise FuzzFailure(f"stack trace or source path in the status: {where}: {text!r}")


@dataclass
class GrpcFuzzRun:
    """The callers, channels and tallies of one run."""

    stack: Stack
    mesh: MeshDeclaration
    budget: FuzzBudget
    admin: Account
    unbuilt: frozenset[str]
    channels: dict[tuple[str, str], grpc.Channel] = field(default_factory=dict)
    calls: int = 0
    codes: dict[str, int] = field(default_factory=dict)
    failures: dict[str, BaseException] = field(default_factory=dict)

    def channel_for(self, service: str, identity: str) -> grpc.Channel:
        key = (service, identity)
        if key not in self.channels:
            self.channels[key] = channel(self.stack.settings, service, identity=identity)
        return self.channels[key]

    def close(self) -> None:
        for chan in self.channels.values():
            chan.close()

    def caller(self, method: MethodDecl) -> tuple[str, tuple[tuple[str, str], ...]]:
        """The identity and metadata the mesh declaration lets in for `method`."""
        if method.access is AccessClass.INTERNAL:
            return sorted(method.callers)[0], ()
        if method.access is AccessClass.PUBLIC:
            return "developer", ()
        token = self.fresh_token() if method.path == LOGOUT else self.admin.token
        return "developer", (("authorization", f"Bearer {token}"),)

    def fresh_token(self) -> str:
        stub = user_grpc.UserServiceStub(self.channel_for("users", "developer"))
        request = user_pb.LoginRequest(email=self.admin.email, password=PASSWORD)
        token: str = stub.Login(request, timeout=CALL_TIMEOUT_SECONDS).token
        return token

    def call(self, service: str, method: MethodDecl, descriptor: MethodDescriptor, payload: bytes) -> None:
        identity, metadata = self.caller(method)
        chan = self.channel_for(service, identity)
        self.calls += 1
        try:
            if descriptor.client_streaming:
                messages: Iterator[bytes] = iter([payload] * STREAM_MESSAGES)
                if descriptor.server_streaming:
                    for _ in chan.stream_stream(method.path)(messages, metadata=metadata, timeout=CALL_TIMEOUT_SECONDS):
                        pass
                else:
                    chan.stream_unary(method.path)(messages, metadata=metadata, timeout=CALL_TIMEOUT_SECONDS)
            elif descriptor.server_streaming:
                try:
                    for _ in chan.unary_stream(method.path)(payload, metadata=metadata, timeout=STREAM_OPEN_SECONDS):
                        pass
                except grpc.RpcError as error:
                    if error.code() is not grpc.StatusCode.DEADLINE_EXCEEDED:
                        raise
                    self.codes["OPEN_STREAM"] = self.codes.get("OPEN_STREAM", 0) + 1
                    return
            else:
                chan.unary_unary(method.path)(payload, metadata=metadata, timeout=CALL_TIMEOUT_SECONDS)
        except grpc.RpcError as error:
            self.codes[error.code().name] = self.codes.get(error.code().name, 0) + 1
            judge(method, error, self.unbuilt)
            return
        self.codes["OK"] = self.codes.get("OK", 0) + 1

    def fuzz(self, service: str, method: MethodDecl, descriptor: MethodDescriptor, kind: str) -> None:
        @self.budget.hypothesis_settings()
        @given(payload=request_bytes(kind, descriptor.input_type))
        def exercise(payload: bytes) -> None:
            self.call(service, method, descriptor, payload)

        try:
            exercise()
        except FuzzFailure as failure:  # every method is fuzzed; all failures are reported together
            self.failures[f"{method.path} ({kind})"] = failure


def service_pids(stack: Stack) -> dict[str, int | None]:
    return {name: service.process.pid() for name, service in stack.services.items()}


@pytest.mark.timeout(1800)
def test_every_method_survives_arbitrary_and_malformed_requests(stack: Stack) -> None:
    budget = FuzzBudget.from_env()
    mesh = load_mesh()
    pool = load_pool()
    pids_before = service_pids(stack)
    assert all(pids_before.values()), pids_before
    run = GrpcFuzzRun(stack, mesh, budget, admin_account(stack), unbuilt_methods(mesh))
    started = time.monotonic()
    methods = 0
    try:
        for name, service in mesh.services.items():
            descriptors = {d.name: d for d in service_methods(pool, f"{service.package}.{service.service}")}
            assert set(descriptors) == set(service.methods), f"{name}: descriptor set and mesh.yaml disagree"
            for method in service.methods.values():
                methods += 1
                for kind in INPUT_KINDS:
                    run.fuzz(name, method, descriptors[method.name], kind)
    finally:
        run.close()

    print(f"gRPC fuzz: {run.calls} calls over {methods} methods in {time.monotonic() - started:.0f}s: {run.codes}")
    assert not run.failures, "\n\n".join(f"{label}:\n{failure}" for label, failure in run.failures.items())
    assert run.calls >= methods * len(INPUT_KINDS), "fewer calls than methods and kinds of input"
    assert service_pids(stack) == pids_before, "a service process died or was replaced during fuzzing"
    for name in mesh.services:
        assert health_status(stack.settings, name) == SERVING, f"{name} is not SERVING after fuzzing"
