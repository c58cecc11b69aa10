"""The contract and the users database agree on emails, and what the database
refuses never reaches a log with the row it refused (a password hash included)."""

from __future__ import annotations

import asyncio
import json
import uuid

import asyncpg
import pytest

from shopmesh_platform.database_errors import format_exception, refusal
from shopmesh_platform.errors import ErrorCode
from shopmesh_stack.stack import Stack
from tests.integration.helpers import http
from tests.integration.users_client import PASSWORD

FAKE_HASH = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$ZmFrZWhhc2g"


def users_log(stack: Stack) -> str:
    return (stack.settings.log_dir / "users.log").read_text()


def test_an_email_without_a_dot_in_its_domain_is_400_and_no_hash_is_logged(stack: Stack) -> None:
    body = {"email": "ada@localhost", "password": PASSWORD, "firstName": "Ada", "lastName": "Lovelace"}
    reply = http(stack, "POST", "/api/v1/users/register", json.dumps(body))
    assert reply.status == 400, reply.body
    violations = [v for d in reply.json()["details"] for v in d.get("fieldViolations", [])]
    assert [(v["field"], v["reason"]) for v in violations] == [("email", "string.account_email")]
    log = users_log(stack)
    assert "$argon2id$" not in log
    assert "Failing row" not in log


async def violate(stack: Stack, statement: str, *args: object) -> asyncpg.PostgresError:
    """The real error PostgreSQL answers to `statement` (in a transaction rolled back)."""
    connection = await asyncpg.connect(stack.postgres.dsn("users"))
    try:
        with pytest.raises(asyncpg.PostgresError) as caught:
            async with connection.transaction():
                await connection.execute(statement, *args)
        return caught.value
    finally:
        await connection.close()


INSERT = "INSERT INTO users (id, email, password_hash, first_name, last_name) VALUES ($1, $2, $3, 'A', 'L')"


def test_real_constraint_errors_are_mapped_and_told_without_the_row(stack: Stack) -> None:
    check = asyncio.run(violate(stack, INSERT, uuid.uuid4(), "ada@localhost", FAKE_HASH))
    assert "Failing row" in str(check) and FAKE_HASH in str(check)  # what PostgreSQL sends
    mapped = refusal(check)
    assert mapped is not None
    assert (mapped.code, mapped.metadata["constraint"]) == (ErrorCode.INVALID_ARGUMENT, "users_email_format")
    assert FAKE_HASH not in mapped.message
    told = format_exception(check)
    assert "users_email_format" in told and FAKE_HASH not in told and "Failing row" not in told

    not_null = asyncio.run(violate(stack, INSERT, uuid.uuid4(), None, FAKE_HASH))
    mapped = refusal(not_null)
    assert mapped is not None
    assert [v.field for v in mapped.field_violations] == ["email"]
    assert FAKE_HASH not in format_exception(not_null)
