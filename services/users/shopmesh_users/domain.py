"""Accounts and sessions: the users service's rules. No grpc here.

Every state change and its event (UserRegistered, UserLoggedIn, SessionRevoked,
UserSuspended) are written in one transaction through the outbox.
"""

from __future__ import annotations

import datetime as dt
from typing import Protocol

import asyncpg
from google.protobuf import timestamp_pb2

from shopmesh.user.v1 import events_pb2 as events
from shopmesh_platform.auth.revocations import token_id_hash
from shopmesh_platform.context import Caller
from shopmesh_platform.errors import AlreadyExists, NotFound, PermissionDenied, Unauthenticated
from shopmesh_platform.events.outbox import append_event
from shopmesh_platform.events.topics import USER_EVENTS
from shopmesh_users import store
from shopmesh_users.issuer import TokenIssuer
from shopmesh_users.passwords import Passwords
from shopmesh_users.records import ClientInfo, IssuedToken, ProfileChanges, UserRecord

TOPIC = USER_EVENTS
DOMAIN = "users"


def normalize_email(email: str) -> str:
    return email.strip().lower()


def to_timestamp(value: dt.datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value)
    return stamp


def may_see(caller: Caller, user_id: str) -> bool:
    """Only the user themself or an admin may read or change an account."""
    return caller.user_id == user_id or caller.is_admin


def may_sign_in(account_status: str) -> bool:
    """Only active accounts sign in (suspended and deleted ones are refused)."""
    return account_status == "active"


def _not_found(user_id: str) -> NotFound:
    return NotFound(f"user {user_id} not found", reason="USER_NOT_FOUND", domain=DOMAIN)


def _account_disabled(status: str) -> PermissionDenied:
    return PermissionDenied(f"account is {status}", reason="ACCOUNT_DISABLED", domain=DOMAIN)


def _bad_credentials() -> Unauthenticated:
    # One answer for an unknown email and a wrong password.
    return Unauthenticated("invalid email or password", reason="INVALID_CREDENTIALS", domain=DOMAIN)


class CheckedAccounts(Protocol):
    """The caller's own account as the current call's session check read it (shopmesh_users.sessions)."""

    def account_checked_for(self, caller: Caller) -> UserRecord | None: ...


class Users:
    """The operations of the users service."""

    def __init__(
        self, pool: asyncpg.Pool, passwords: Passwords, issuer: TokenIssuer, checked_accounts: CheckedAccounts
    ) -> None:
        self._pool = pool
        self._passwords = passwords
        self._issuer = issuer
        self._checked_accounts = checked_accounts

    async def _start_session(self, connection: asyncpg.Connection, user: UserRecord, client: ClientInfo) -> IssuedToken:
        issued = self._issuer.issue(user.id, user.role)
        hashed = token_id_hash(issued.token_id)
        await store.insert_session(
            connection,
            user_id=user.id,
            token_id_hash=hashed,
            expires_at=issued.expires_at,
            device=client.device,
            ip_address=client.ip_address,
        )
        return issued

    async def register(
        self, *, email: str, password: str, first_name: str, last_name: str, client: ClientInfo
    ) -> tuple[UserRecord, str]:
        email = normalize_email(email)
        password_hash = await self._passwords.hash(password)
        async with self._pool.acquire() as connection, connection.transaction():
            try:
                user = await store.insert_user(
                    connection,
                    email=email,
                    password_hash=password_hash,
                    first_name=first_name.strip(),
                    last_name=last_name.strip(),
                )
            except store.EmailTaken:
                raise AlreadyExists(
                    "an account with this email already exists", reason="EMAIL_TAKEN", domain=DOMAIN
                ) from None
            issued = await self._start_session(connection, user, client)
            await append_event(
                connection,
                TOPIC,
                user.id,
                events.UserRegistered(
                    occurred_at=to_timestamp(user.created_at),
                    user_id=user.id,
                    email=user.email,
                    first_name=user.first_name,
                    last_name=user.last_name,
                ),
            )
        return user, issued.token

    async def login(self, *, email: str, password: str, client: ClientInfo) -> tuple[UserRecord, str]:
        async with self._pool.acquire() as connection:
            found = await store.find_credentials(connection, normalize_email(email))
        user, password_hash = found if found else (None, None)
        if not await self._passwords.verify(password_hash, password) or user is None or password_hash is None:
            raise _bad_credentials()
        if not may_sign_in(user.account_status):
            raise _account_disabled(user.account_status)
        rehash = await self._passwords.hash(password) if self._passwords.needs_rehash(password_hash) else None
        async with self._pool.acquire() as connection, connection.transaction():
            if rehash:
                await store.set_password_hash(connection, user.id, rehash)
            if not await store.record_login(connection, user.id):
                raise _account_disabled("no longer active")  # suspended since the password check
            issued = await self._start_session(connection, user, client)
            await append_event(
                connection,
                TOPIC,
                user.id,
                events.UserLoggedIn(user_id=user.id, token_id_hash=token_id_hash(issued.token_id)),
            )
            refreshed = await store.find_by_id(connection, user.id)
        assert refreshed is not None
        return refreshed, issued.token

    async def get(self, caller: Caller, user_id: str) -> UserRecord:
        """Only the user themself or an admin; anyone else learns nothing (NOT_FOUND).

        The caller's own account is the row this call's session check read (the same
        query, moments earlier); any other account, or a call whose check read none, is read here.
        """
        if not may_see(caller, user_id):
            raise _not_found(user_id)
        if user_id == caller.user_id:
            checked = self._checked_accounts.account_checked_for(caller)
            if checked is not None:
                return checked
        async with self._pool.acquire() as connection:
            user = await store.find_by_id(connection, user_id)
        if user is None:
            raise _not_found(user_id)
        return user

    async def contact(self, user_id: str) -> UserRecord:
        """An account for a mesh service allowed to ask (mesh.yaml `callers`): no user check here."""
        async with self._pool.acquire() as connection:
            user = await store.find_by_id(connection, user_id)
        if user is None:
            raise _not_found(user_id)
        return user

    async def update(self, caller: Caller, user_id: str, changes: ProfileChanges) -> UserRecord:
        if not may_see(caller, user_id):
            raise _not_found(user_id)
        async with self._pool.acquire() as connection, connection.transaction():
            if await store.find_by_id(connection, user_id) is None:
                raise _not_found(user_id)
            await store.update_profile(connection, user_id, changes)
            user = await store.find_by_id(connection, user_id)
        assert user is not None
        return user

    async def logout(self, caller: Caller) -> None:
        """Revoke the caller's token: refused here at once (shopmesh_users.sessions),
        elsewhere once the event reaches their deny-lists."""
        if caller.user_id is None or caller.token_id is None:
            raise Unauthenticated("no session to end", reason="TOKEN_MISSING", domain=DOMAIN)
        hashed = token_id_hash(caller.token_id)
        async with self._pool.acquire() as connection, connection.transaction():
            expires_at = await store.revoke_session(connection, hashed)
            if expires_at is not None:
                await append_event(
                    connection,
                    TOPIC,
                    caller.user_id,
                    events.SessionRevoked(
                        user_id=caller.user_id, token_id_hash=hashed, expires_at=to_timestamp(expires_at)
                    ),
                )

    async def suspend(self, caller: Caller, user_id: str, reason: str) -> UserRecord:
        if not caller.is_admin:
            raise PermissionDenied("only an admin may suspend accounts", reason="ROLE_REQUIRED", domain=DOMAIN)
        async with self._pool.acquire() as connection, connection.transaction():
            if await store.find_by_id(connection, user_id) is None:
                raise _not_found(user_id)
            await store.set_account_status(connection, user_id, "suspended")
            await append_event(connection, TOPIC, user_id, events.UserSuspended(user_id=user_id, reason=reason))
            for hashed, expires_at in await store.revoke_all_sessions(connection, user_id):
                await append_event(
                    connection,
                    TOPIC,
                    user_id,
                    events.SessionRevoked(user_id=user_id, token_id_hash=hashed, expires_at=to_timestamp(expires_at)),
                )
            user = await store.find_by_id(connection, user_id)
        assert user is not None
        return user
