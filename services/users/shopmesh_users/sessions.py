"""The users service's own revocation check: its sessions table, not the Kafka feed.

The other services learn of revocations from `SessionRevoked` events; the users
service owns the sessions, so it asks its database on every user call. A token
counts as revoked unless its session exists, is not revoked and belongs to an
active account: a logout or a suspension takes effect here at once, also
right after a restart and while Kafka is down. When the database cannot be
asked, the call fails closed with UNAVAILABLE (health is NOT_SERVING then too).
"""

from __future__ import annotations

import asyncpg

from shopmesh_platform.auth.revocations import token_id_hash
from shopmesh_platform.errors import Unavailable
from shopmesh_users import store


class SessionTable:
    """A shopmesh_platform.auth.tokens.RevocationCheck backed by `user_sessions`."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def is_revoked(self, token_id: str) -> bool:
        try:
            async with self._pool.acquire() as connection:
                active = await store.session_is_active(connection, token_id_hash(token_id))
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise Unavailable(
                "sessions cannot be checked right now", reason="SESSIONS_UNAVAILABLE", domain="users"
            ) from exc
        return not active
