"""The users service's session check (shopmesh_users.sessions) on the real users database.

One query answers the session check and reads the caller's account; GetMe
answers with that row. What must still hold: the check asks the database on
every call (a suspension or a logout is refused on the very next call, and a
reactivation accepted on the next), the row is used only within the call that
read it and only for the caller's own account, and the check fails closed.
"""

from __future__ import annotations

import asyncio
import contextvars
import uuid
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import TypeVar

import asyncpg
import grpc
import jwt
import pytest

from shopmesh_platform.auth.tokens import TokenConfig
from shopmesh_platform.context import Caller
from shopmesh_platform.errors import Unavailable
from shopmesh_stack.stack import Stack
from shopmesh_users.domain import Users
from shopmesh_users.issuer import TokenIssuer
from shopmesh_users.keys import KeyStore
from shopmesh_users.passwords import Passwords
from shopmesh_users.sessions import SessionTable
from tests.integration.helpers import http
from tests.integration.users_client import Account, grpc_get_me, register_patiently

T = TypeVar("T")


def in_own_call(work: Awaitable[T]) -> Awaitable[T]:
    """`work` in a task of its own with a fresh context, as grpc.aio runs each call."""

    async def run() -> T:
        return await work

    return asyncio.get_running_loop().create_task(run(), context=contextvars.Context())


def caller_of(account: Account) -> Caller:
    claims = jwt.decode(account.token, options={"verify_signature": False})
    return Caller(user_id=account.id, role=str(claims["role"]), token_id=str(claims["jti"]))


@pytest.fixture
async def pool(stack: Stack) -> AsyncIterator[asyncpg.Pool]:
    created = await asyncpg.create_pool(stack.postgres.dsn("users"), min_size=1, max_size=2)
    assert created is not None
    try:
        yield created
    finally:
        await created.close()


def users_on(pool: asyncpg.Pool, sessions: SessionTable, key_dir: Path) -> Users:
    issuer = TokenIssuer(
        TokenConfig(issuer="test", audience="test", ttl_seconds=60), KeyStore(key_dir, generate_if_missing=True)
    )
    return Users(pool, Passwords(), issuer, sessions)


async def set_first_name(pool: asyncpg.Pool, user_id: str, name: str) -> None:
    await pool.execute("UPDATE users SET first_name = $2 WHERE id = $1", uuid.UUID(user_id), name)


async def set_status(pool: asyncpg.Pool, user_id: str, status: str) -> None:
    await pool.execute("UPDATE users SET account_status = $2 WHERE id = $1", uuid.UUID(user_id), status)


async def test_get_me_answers_with_the_row_its_session_check_read(
    stack: Stack, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    account = register_patiently(stack)
    caller = caller_of(account)
    sessions = SessionTable(pool)
    users = users_on(pool, sessions, tmp_path)

    async def call(change_before_handler: str | None = None) -> str:
        assert await sessions.is_revoked(str(caller.token_id)) is False
        if change_before_handler is not None:
            # Changed between the check and the handler: a second read would see it.
            await set_first_name(pool, account.id, change_before_handler)
        return (await users.get(caller, account.id)).first_name

    assert await in_own_call(call(change_before_handler="Changed")) == "Ada"
    # The next call checks again and reads the account as it is now; nothing is kept across calls.
    assert await in_own_call(call()) == "Changed"


async def test_the_checked_row_serves_only_the_caller_whose_token_was_checked(
    stack: Stack, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    owner, other = register_patiently(stack), register_patiently(stack)
    sessions = SessionTable(pool)
    users = users_on(pool, sessions, tmp_path)

    async def call() -> None:
        assert await sessions.is_revoked(str(caller_of(owner).token_id)) is False
        await set_first_name(pool, owner.id, "Fresh")
        # Another token (even of the same user id) or no check at all: the domain reads the account.
        other_token = Caller(user_id=owner.id, role="customer", token_id=str(caller_of(other).token_id))
        assert sessions.account_checked_for(other_token) is None
        assert (await users.get(other_token, owner.id)).first_name == "Fresh"
        # An admin reading someone else's account never gets the checked row.
        admin = Caller(user_id=other.id, role="admin", token_id=str(caller_of(owner).token_id))
        assert sessions.account_checked_for(admin) is None
        assert (await users.get(admin, owner.id)).first_name == "Fresh"

    await in_own_call(call())
    # Outside the call that checked it (here: the test's own context), there is no checked row.
    assert sessions.account_checked_for(caller_of(owner)) is None


async def test_a_suspension_between_two_calls_is_refused_on_the_second_and_undone_on_the_next(
    stack: Stack, pool: asyncpg.Pool
) -> None:
    account = register_patiently(stack)
    token_id = str(caller_of(account).token_id)
    sessions = SessionTable(pool)
    assert await in_own_call(sessions.is_revoked(token_id)) is False
    # Only the account's status changes (its sessions stay): the check's join sees it at once.
    await set_status(pool, account.id, "suspended")
    assert await in_own_call(sessions.is_revoked(token_id)) is True
    await set_status(pool, account.id, "active")
    assert await in_own_call(sessions.is_revoked(token_id)) is False


def test_get_me_is_refused_on_the_call_after_a_suspension_and_after_a_logout(stack: Stack) -> None:
    suspended, logged_out = register_patiently(stack), register_patiently(stack)
    for account in (suspended, logged_out):
        assert grpc_get_me(stack, account.token) == grpc.StatusCode.OK
        assert http(stack, "GET", "/api/v1/users/me", None, account.bearer).status == 200

    async def suspend() -> None:
        connection = await asyncpg.connect(stack.postgres.dsn("users"))
        try:
            await connection.execute(
                "UPDATE users SET account_status = 'suspended' WHERE id = $1", uuid.UUID(suspended.id)
            )
        finally:
            await connection.close()

    asyncio.run(suspend())
    assert http(stack, "POST", "/api/v1/users/logout", "{}", logged_out.bearer).status == 200
    for account in (suspended, logged_out):
        assert grpc_get_me(stack, account.token) == grpc.StatusCode.UNAUTHENTICATED
        assert http(stack, "GET", "/api/v1/users/me", None, account.bearer).status == 401


async def test_the_check_fails_closed_when_the_database_cannot_be_asked(stack: Stack, tmp_path: Path) -> None:
    account = register_patiently(stack)
    caller = caller_of(account)
    closed = await asyncpg.create_pool(stack.postgres.dsn("users"), min_size=1, max_size=1)
    assert closed is not None
    sessions = SessionTable(closed)

    async def call() -> None:
        assert await sessions.is_revoked(str(caller.token_id)) is False
        await closed.close()
        with pytest.raises(Unavailable):
            await sessions.is_revoked(str(caller.token_id))
        # The earlier check's row is gone with the failed check.
        assert sessions.account_checked_for(caller) is None

    await in_own_call(call())
