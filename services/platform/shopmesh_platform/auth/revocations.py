"""The deny-list of revoked token ids, and the revocation events that fill it.

No service reads the issuer's database: each keeps revoked `jti`s (as sha256
hashes) in memory until the token would have expired anyway, filled from the
issuer's revocation events (mesh.yaml `auth`: e.g. SessionRevoked on
user-events) by shopmesh_platform.auth.revocation_feed. The list fails closed:
until it is *loaded* (the feed has replayed every revocation that can still
matter), asking it about a token raises Unavailable ("revocations not loaded"),
so a call that needs a user token is refused rather than served on a list that
may be missing a logout.

Reading an event (`revocation_of`) is kept apart from applying it
(`RevocationList.apply`). The event type is the issuer's, known by its name:
it must carry `token_id_hash` (sha256 hex of the token id) and `expires_at`
(a Timestamp); nothing here imports the issuer's generated code.
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass
from typing import Any

from shopmesh_platform.errors import Unavailable
from shopmesh_platform.events.consumer import PoisonEvent

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def token_id_hash(token_id: str) -> str:
    """How a token id travels and is stored: sha256 hex, never the id itself."""
    return hashlib.sha256(token_id.encode()).hexdigest()


@dataclass(frozen=True)
class Revocation:
    """One revoked token: the hash of its id, and when it expires (epoch seconds)."""

    token_id_hash: str
    expires_at: float


class UndecodableRecord(PoisonEvent):
    """A revocation event that does not hold a usable revocation."""


def revocation_of(event: Any) -> Revocation:
    """The revocation a decoded revocation event carries.

    Raises UndecodableRecord when it lacks a token id hash or an expiry.
    """
    if not _SHA256_HEX.fullmatch(getattr(event, "token_id_hash", "")):
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
        """The verifier's question (shopmesh_platform.auth.tokens.RevocationCheck)."""
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
