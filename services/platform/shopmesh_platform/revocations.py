"""The deny-list of revoked token ids, and the `SessionRevoked` records that fill it.

No service reads the users database: each keeps revoked `jti`s (as sha256
hashes) in memory until the token would have expired anyway, filled from
`user-events` by shopmesh_platform.revocation_feed. The list fails closed:
until it is *loaded* (the feed has replayed every revocation that can still
matter), asking it about a token raises Unavailable ("revocations not loaded"),
so a call that needs a user token is refused rather than served on a list that
may be missing a logout.

Reading a record (`decode_revocation`) is kept apart from applying it
(`RevocationList.apply`): the feed around them is only Kafka plumbing.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass

from google.protobuf.message import DecodeError

from shopmesh.user.v1 import events_pb2 as user_events
from shopmesh_platform.errors import Unavailable

SESSION_REVOKED = user_events.SessionRevoked.DESCRIPTOR.full_name
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def token_id_hash(token_id: str) -> str:
    """How a token id travels and is stored: sha256 hex, never the id itself."""
    return hashlib.sha256(token_id.encode()).hexdigest()


@dataclass(frozen=True)
class Revocation:
    """One revoked token: the hash of its id, and when it expires (epoch seconds)."""

    token_id_hash: str
    expires_at: float


class UndecodableRecord(ValueError):
    """A record typed `SessionRevoked` that does not hold a usable one."""


def _event_type(headers: Sequence[tuple[str, bytes]]) -> bytes | None:
    # Compared as bytes: a header that is not even UTF-8 is simply not our type.
    for key, value in headers:
        if key == "event-type":
            return value
    return None


def decode_revocation(headers: Sequence[tuple[str, bytes]] | None, value: bytes | None) -> Revocation | None:
    """The revocation a `user-events` record carries; None for other event types.

    Raises UndecodableRecord when the record says it is a `SessionRevoked` but
    its payload does not parse or lacks a token id hash or an expiry.
    """
    if _event_type(headers or ()) != SESSION_REVOKED.encode():
        return None
    try:
        event = user_events.SessionRevoked.FromString(value or b"")
    except DecodeError:
        raise UndecodableRecord("payload is not a SessionRevoked message") from None
    if not _SHA256_HEX.fullmatch(event.token_id_hash):
        raise UndecodableRecord("token_id_hash is not a sha256 hex digest")
    if not event.HasField("expires_at"):
        raise UndecodableRecord("expires_at is missing")
    return Revocation(event.token_id_hash, float(event.expires_at.ToSeconds()))


class RevocationList:
    """Revoked token ids (as hashes) and when each may be forgotten; fails closed until loaded."""

    def __init__(self) -> None:
        self._expires_at: dict[str, float] = {}
        self._loaded = False

    @property
    def loaded(self) -> bool:
        """Whether every revocation that can still matter has been applied."""
        return self._loaded

    def mark_loaded(self) -> None:
        self._loaded = True

    def apply(self, revocation: Revocation) -> None:
        if revocation.expires_at > time.time():
            self._expires_at[revocation.token_id_hash] = revocation.expires_at

    def revoke(self, token_id: str, expires_at: float) -> None:
        self.apply(Revocation(token_id_hash(token_id), expires_at))

    def contains(self, token_id: str) -> bool:
        """Whether `token_id` is on the list now (loaded or not)."""
        hashed = token_id_hash(token_id)
        expires_at = self._expires_at.get(hashed)
        if expires_at is None:
            return False
        if expires_at <= time.time():
            del self._expires_at[hashed]
            return False
        return True

    async def is_revoked(self, token_id: str) -> bool:
        """The verifier's question (shopmesh_platform.tokens.RevocationCheck)."""
        if not self._loaded:
            raise Unavailable(
                "revocations not loaded: user tokens are refused until revoked sessions have been replayed",
                reason="REVOCATIONS_NOT_LOADED",
                domain="auth",
            )
        return self.contains(token_id)

    def prune(self) -> None:
        now = time.time()
        for hashed in [h for h, expires_at in self._expires_at.items() if expires_at <= now]:
            del self._expires_at[hashed]

    def __len__(self) -> int:
        return len(self._expires_at)
