"""The users service's own revocation check: its sessions table, not the Kafka feed.

The other services learn of revocations from `SessionRevoked` events; the users
service owns the sessions, so it asks its database on every user call. A token
counts as revoked unless its session exists, is not revoked and belongs to an
active account: a logout or a suspension takes effect here at once, also
right after a restart and while Kafka is down. When the database cannot be
asked, the call fails closed with UNAVAILABLE (health is NOT_SERVING then too).

The same query returns the session's account (`make bench-platform`: a second
pool checkout and query for the handler's read of the caller's own account cost
as much as the check itself). The account is kept for the rest of the call
only (a ContextVar: grpc.aio runs each call in its own task, and the auth
interceptor awaits this check in that task before the handler runs), tied to
the token it was read for; `account_checked_for` hands it to the domain, which
uses it only for the caller's own account. Nothing is kept across calls: the
next call asks the database again.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass

import asyncpg

from shopmesh_platform.auth.revocations import token_id_hash
from shopmesh_platform.context import Caller
from shopmesh_platform.errors import Unavailable
from shopmesh_users import store
from shopmesh_users.records import UserRecord


@dataclass(frozen=True)
class _CheckedSession:
    """What one call's session check found: the token it checked and its account's row."""

    token_id: str
    account: asyncpg.Record


class SessionTable:
    """A shopmesh_platform.auth.tokens.RevocationCheck backed by `user_sessions`."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        # Per call (each grpc.aio call runs in its own task with its own copy of the context).
        self._checked: ContextVar[_CheckedSession | None] = ContextVar("shopmesh_users_checked_session", default=None)

    async def is_revoked(self, token_id: str) -> bool:
        self._checked.set(None)
        try:
            async with self._pool.acquire() as connection:
                account = await store.active_session_account(connection, token_id_hash(token_id))
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise Unavailable(
                "sessions cannot be checked right now", reason="SESSIONS_UNAVAILABLE", domain="users"
            ) from exc
        if account is None:
            return True
        self._checked.set(_CheckedSession(token_id, account))
        return False

    def account_checked_for(self, caller: Caller) -> UserRecord | None:
        """The caller's own account as this call's session check read it, or None.

        None unless this call checked the caller's token and found an active
        session of the caller's account (then the domain reads the account itself).
        """
        checked = self._checked.get()
        if checked is None or caller.token_id is None or checked.token_id != caller.token_id:
            return None
        account = store.user_record(checked.account)
        return account if account.id == caller.user_id else None
