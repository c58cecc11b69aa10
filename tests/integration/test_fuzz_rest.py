"""REST fuzzing: schemathesis invents requests for every operation of the OpenAPI
document the edge serves and checks every answer.

What each generated case proves (property checks on the response):
- no server error: no 5xx at all, with one honest exception. 501 is accepted only
  from an operation whose gRPC method is not built yet (its service's servicer
  leaves it to the generated base class: tests/integration/fuzzing.py) *and* only
  when the body is the platform's google.rpc.Status with ErrorInfo reason
  NOT_IMPLEMENTED. When a colleague's servicer defines the method, the exception
  ends by itself and its answers are checked like all others;
- the status code is one the document declares for the operation;
- the content type is one the document declares, and the body matches the declared
  schema (google.rpc.Status for errors, the response message for 200).

Cases are positive (valid by the document's schemas, mostly refused by the
contracts' stricter rules) and negative (wrong types, missing or extra fields,
malformed path and query values). `user` operations carry a valid admin token,
so requests get past authentication and the role checks to the input rules and
handlers; Logout gets a fresh session per case, so it never revokes the token the
other cases use. The count of cases is asserted, so a budget that silently
shrinks fails the test.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import given
from hypothesis.errors import Unsatisfiable
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from shopmesh_platform.mesh import load_mesh
from shopmesh_stack.stack import Stack
from tests.integration.fuzzing import DEFAULT_EXAMPLES, FuzzBudget, is_not_implemented_json, unbuilt_methods
from tests.integration.helpers import http
from tests.integration.inventory_client import admin_account
from tests.integration.users_client import PASSWORD, Account

# Enough for `make test`'s floor of 1,000 cases with the default budget (23 operations,
# positive and negative cases each).
MIN_CASES = 1000
LOGOUT_OPERATION = "UserService_Logout"


class UnexpectedServerError(AssertionError):
    """A 5xx the honest rule does not allow."""


def no_server_error(unbuilt: frozenset[str]) -> Callable[..., None]:
    """The no-5xx check with its one exception (see the module docstring)."""

    def check(ctx: Any, response: Any, case: schemathesis.Case[Any]) -> None:
        status = response.status_code
        if status < 500:
            return
        grpc_method = case.operation.definition.raw.get("x-shopmesh-grpc-method")
        if status == 501 and grpc_method in unbuilt:
            try:
                body = json.loads(response.content)
            except ValueError:
                body = None
            if is_not_implemented_json(body):
                return
        raise UnexpectedServerError(f"{case.operation.label}: {status} {response.content[:500]!r}")

    return check


def fresh_token(stack: Stack, account: Account) -> str:
    reply = http(stack, "POST", "/api/v1/users/login", json.dumps({"email": account.email, "password": PASSWORD}))
    assert reply.status == 200, reply.body
    token: str = reply.json()["token"]
    return token


def served_schema(stack: Stack) -> Any:
    schema = schemathesis.openapi.from_url(f"{stack.settings.edge_url}/api/v1/openapi.json", timeout=15)
    schema.config.update(base_url=stack.settings.edge_url)
    return schema


@dataclass
class RestFuzzRun:
    """One run over the document: what it sends with, and what it found."""

    stack: Stack
    budget: FuzzBudget
    admin: Account
    checks: list[Callable[..., Any]]
    session: requests.Session = field(default_factory=requests.Session)
    counts: dict[str, int] = field(default_factory=dict)
    failures: dict[str, BaseException] = field(default_factory=dict)
    without_negative_cases: list[str] = field(default_factory=list)

    def headers_for(self, operation: Any) -> dict[str, str]:
        if operation.definition.raw.get("x-shopmesh-access") != "user":
            return {}
        is_logout = operation.definition.raw["operationId"] == LOGOUT_OPERATION
        token = fresh_token(self.stack, self.admin) if is_logout else self.admin.token
        return {"Authorization": f"Bearer {token}"}

    def fuzz(self, operation: Any, mode: schemathesis.GenerationMode) -> None:
        label = f"{operation.label} ({mode.value})"

        @self.budget.hypothesis_settings()
        @given(case=operation.as_strategy(mode))
        def exercise(case: schemathesis.Case[Any]) -> None:
            headers = self.headers_for(operation)
            response = case.call(session=self.session, headers=headers, timeout=30)
            self.counts[label] = self.counts.get(label, 0) + 1
            case.validate_response(response, checks=self.checks, headers=headers)

        try:
            exercise()
        except Unsatisfiable:
            # Nothing about it can be malformed (no parameters, or a free-form string).
            if mode is not schemathesis.GenerationMode.NEGATIVE:
                raise
            self.without_negative_cases.append(operation.label)
        # Every operation is fuzzed; all failures are reported together.
        except (Exception, BaseExceptionGroup) as failure:
            self.failures[label] = failure


@pytest.mark.timeout(1800)
def test_generated_requests_get_documented_answers_and_no_server_error(stack: Stack) -> None:
    budget = FuzzBudget.from_env()
    checks = [
        no_server_error(unbuilt_methods(load_mesh())),
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
    ]
    run = RestFuzzRun(stack, budget, admin_account(stack), checks)
    operations = [result.ok() for result in served_schema(stack).get_all_operations()]
    assert len(operations) >= 20, "the served document lost its operations"
    started = time.monotonic()
    for operation in operations:
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
            run.fuzz(operation, mode)

    total = sum(run.counts.values())
    print(
        f"REST fuzz: {total} cases over {len(operations)} operations in {time.monotonic() - started:.0f}s; "
        f"no negative case possible for {run.without_negative_cases}"
    )
    assert not run.failures, "\n\n".join(f"{label}:\n{failure}" for label, failure in run.failures.items())
    if budget.examples >= DEFAULT_EXAMPLES:
        assert total >= MIN_CASES, run.counts
