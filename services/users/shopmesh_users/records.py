"""Domain records of the users service (no grpc, no SQL)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class UserRecord:
    """An account with its profile; the password hash never leaves the store."""

    id: str
    email: str
    first_name: str
    last_name: str
    created_at: dt.datetime
    updated_at: dt.datetime
    role: str
    account_status: str
    email_verified: bool
    last_login: dt.datetime | None = None
    phone: str | None = None
    date_of_birth: dt.date | None = None
    avatar_url: str | None = None
    bio: str | None = None
    address: dict[str, Any] | None = None


@dataclass(frozen=True)
class ProfileChanges:
    """The only fields a client may change; None means "leave as is"."""

    first_name: str | None = None
    last_name: str | None = None
    phone: str | None = None
    date_of_birth: dt.date | None = None
    avatar_url: str | None = None
    bio: str | None = None
    address: dict[str, Any] | None = None

    def user_columns(self) -> dict[str, Any]:
        values = {
            "first_name": self.first_name,
            "last_name": self.last_name,
            "phone": self.phone,
            "date_of_birth": self.date_of_birth,
        }
        return {k: v for k, v in values.items() if v is not None}

    def profile_columns(self) -> dict[str, Any]:
        values = {"avatar_url": self.avatar_url, "bio": self.bio, "address": self.address}
        return {k: v for k, v in values.items() if v is not None}


@dataclass(frozen=True)
class ClientInfo:
    """Where a sign-in came from, recorded with its session."""

    device: str | None = None
    ip_address: str | None = None


@dataclass(frozen=True)
class IssuedToken:
    token: str
    token_id: str
    expires_at: dt.datetime
    claims: dict[str, Any] = field(default_factory=dict)
