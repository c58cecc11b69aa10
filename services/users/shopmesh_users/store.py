"""SQL for the users database (asyncpg). Every function runs on a given connection,
so the domain decides the transaction boundaries."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

import asyncpg

from shopmesh_users.records import ProfileChanges, UserRecord

_SELECT_USER = """
SELECT u.id, u.email, u.first_name, u.last_name, u.created_at, u.updated_at, u.role,
       u.account_status, u.email_verified, u.last_login, u.phone, u.date_of_birth,
       p.avatar_url, p.bio, p.address
FROM users u LEFT JOIN user_profiles p ON p.user_id = u.id
"""


def user_record(row: asyncpg.Record) -> UserRecord:
    """The account a row of `_SELECT_USER`'s columns holds."""
    values = dict(row)
    values["id"] = str(values["id"])
    if values["address"] is not None:
        values["address"] = json.loads(values["address"])
    return UserRecord(**values)


EMAIL_UNIQUE_INDEX = "users_email_unique"


class EmailTaken(Exception):
    """The unique email index refused the insert."""


async def insert_user(
    connection: asyncpg.Connection, *, email: str, password_hash: str, first_name: str, last_name: str
) -> UserRecord:
    user_id = uuid.uuid4()
    try:
        await connection.execute(
            "INSERT INTO users (id, email, password_hash, first_name, last_name) VALUES ($1, $2, $3, $4, $5)",
            user_id,
            email,
            password_hash,
            first_name,
            last_name,
        )
    except asyncpg.UniqueViolationError as exc:
        # Any other violation is mapped by the platform (shopmesh_platform.database_errors).
        if exc.constraint_name != EMAIL_UNIQUE_INDEX:
            raise
        raise EmailTaken() from None
    await connection.execute("INSERT INTO user_profiles (user_id) VALUES ($1)", user_id)
    found = await find_by_id(connection, str(user_id))
    assert found is not None
    return found


async def find_by_id(connection: asyncpg.Connection, user_id: str) -> UserRecord | None:
    row = await connection.fetchrow(_SELECT_USER + " WHERE u.id = $1", uuid.UUID(user_id))
    return user_record(row) if row else None


async def find_credentials(connection: asyncpg.Connection, email: str) -> tuple[UserRecord, str] | None:
    row = await connection.fetchrow("SELECT password_hash, id FROM users WHERE email = $1", email)
    if row is None:
        return None
    found = await find_by_id(connection, str(row["id"]))
    assert found is not None
    return found, row["password_hash"]


async def set_password_hash(connection: asyncpg.Connection, user_id: str, password_hash: str) -> None:
    await connection.execute("UPDATE users SET password_hash = $2 WHERE id = $1", uuid.UUID(user_id), password_hash)


async def record_login(connection: asyncpg.Connection, user_id: str) -> bool:
    """Stamp the login of an active account; False if it is no longer active.

    The row lock orders it against a suspension: either this login's session
    exists when the suspension revokes them all, or the login sees the new status.
    """
    updated: str = await connection.execute(
        "UPDATE users SET last_login = now() WHERE id = $1 AND account_status = 'active'", uuid.UUID(user_id)
    )
    return updated == "UPDATE 1"


async def insert_session(
    connection: asyncpg.Connection,
    *,
    user_id: str,
    token_id_hash: str,
    expires_at: dt.datetime,
    device: str | None,
    ip_address: str | None,
) -> None:
    await connection.execute(
        """INSERT INTO user_sessions (user_id, token_id_hash, device_info, ip_address, expires_at)
           VALUES ($1, $2, $3, $4, $5)""",
        uuid.UUID(user_id),
        token_id_hash,
        device,
        ip_address,
        expires_at,
    )


async def revoke_session(connection: asyncpg.Connection, token_id_hash: str) -> dt.datetime | None:
    """Mark one session revoked; returns its expiry, or None if it was not active."""
    expires_at: dt.datetime | None = await connection.fetchval(
        """UPDATE user_sessions SET revoked_at = now()
           WHERE token_id_hash = $1 AND revoked_at IS NULL RETURNING expires_at""",
        token_id_hash,
    )
    return expires_at


async def active_session_account(connection: asyncpg.Connection, token_id_hash: str) -> asyncpg.Record | None:
    """The account of a token's session (`_SELECT_USER`'s columns, see `user_record`), or None
    unless the session exists, is not revoked, and its account is active.

    One query answers both the session check and a read of the caller's own
    account; the row is returned raw, converted only by the call that uses it.
    """
    row: asyncpg.Record | None = await connection.fetchrow(
        _SELECT_USER
        + """ JOIN user_sessions s ON s.user_id = u.id
        WHERE s.token_id_hash = $1 AND s.revoked_at IS NULL AND u.account_status = 'active'""",
        token_id_hash,
    )
    return row


async def revoke_all_sessions(connection: asyncpg.Connection, user_id: str) -> list[tuple[str, dt.datetime]]:
    """Revoke every active session of a user; returns (token id hash, expiry) of each."""
    rows = await connection.fetch(
        """UPDATE user_sessions SET revoked_at = now()
           WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > now()
           RETURNING token_id_hash, expires_at""",
        uuid.UUID(user_id),
    )
    return [(row["token_id_hash"], row["expires_at"]) for row in rows]


async def update_profile(connection: asyncpg.Connection, user_id: str, changes: ProfileChanges) -> None:
    for table, key, columns in (
        ("users", "id", changes.user_columns()),
        ("user_profiles", "user_id", changes.profile_columns()),
    ):
        if not columns:
            continue
        # Column names come from ProfileChanges, never from the client.
        assignments = ", ".join(f"{name} = ${index}" for index, name in enumerate(columns, start=2))
        values: list[Any] = [json.dumps(v) if name == "address" else v for name, v in columns.items()]
        await connection.execute(f"UPDATE {table} SET {assignments} WHERE {key} = $1", uuid.UUID(user_id), *values)


async def set_account_status(connection: asyncpg.Connection, user_id: str, status: str) -> None:
    await connection.execute("UPDATE users SET account_status = $2 WHERE id = $1", uuid.UUID(user_id), status)
