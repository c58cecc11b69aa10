"""User token verification, the same in every service (DESIGN §6).

Tokens are EdDSA (Ed25519) JWTs issued by the mesh.yaml `auth.issuer`, verified against
its published JWKS: the algorithm is pinned (so `none` and HS256 signed with
the public key fail), `kid` must name a published key, and `iss`, `aud`,
`exp`, `iat`, `sub`, `jti` and `role` are required. A token whose `jti` is on
the revocation list is refused.

The key set is a cache of the JWKS with a lifetime (SHOPMESH_JWKS_REFRESH_SECONDS):
once it is older, the next verification refetches it and the fetched set
replaces the old one whole, so a key the users service retired stops verifying
within one refresh period. An unknown key id triggers a refetch too
(rate-limited), so a newly published key is picked up at once. If the users
service cannot be reached, the last set keeps verifying for at most
SHOPMESH_JWKS_MAX_STALE_SECONDS more; after that every token is refused
(fail closed) until a fetch succeeds.
A token whose `jti` is revoked is refused; while the revocation check cannot
tell (the deny-list has not been replayed yet) a valid token is refused too,
with UNAVAILABLE: the check fails closed.

Verifying a token's signature and claims is the largest part of a call's cost
(`make bench-platform`), so a token that verified is remembered, by its raw
text, in a bounded cache (`VerifiedTokens`). A remembered token still goes
through everything that can change after it was verified: its key must still be
the one the current key set holds for its `kid` (a refresh, a retired key or a
key set too old to trust all end the shortcut, with the same refusal as
without it), it is used only before its `exp` (the full check then decides,
leeway included), and its `jti` is checked against revocations on every call;
a revoked token is dropped from the cache.

Besides its keys, the JWKS carries the issuer's token lifetime
(`token_lifetime_seconds`): how far back a service replays revocations.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import jwt

from shopmesh_platform.config import EnvReader
from shopmesh_platform.context import Caller
from shopmesh_platform.errors import Unauthenticated

ALGORITHM = "EdDSA"
ROLES = frozenset({"customer", "admin"})
REQUIRED_CLAIMS = ["iss", "aud", "sub", "exp", "iat", "jti"]

JwksSource = Callable[[], Awaitable[Mapping[str, Any]]]
Clock = Callable[[], float]
logger = logging.getLogger("shopmesh.tokens")

# The JWKS member (proto field name of GetJwksResponse) with the issuer's token lifetime.
TOKEN_LIFETIME_MEMBER = "token_lifetime_seconds"
# Verified tokens remembered per verifier: a few MB at most (a token is ~0.5 kB).
MAX_CACHED_TOKENS = 10_000


class RevocationCheck(Protocol):
    """Whether a token id was revoked; raises Unavailable when it cannot tell (fail closed)."""

    async def is_revoked(self, token_id: str) -> bool: ...


def published_token_lifetime(jwks: Mapping[str, Any]) -> float | None:
    """The token lifetime (seconds) an issuer publishes in its JWKS, or None if it publishes none."""
    value = jwks.get(TOKEN_LIFETIME_MEMBER)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        return None
    return float(value)


@dataclass(frozen=True)
class TokenConfig:
    """What a valid token says about who issued it and for whom.

    `ttl_seconds` is the issuer's setting (the users service signs tokens for
    that long and publishes it in its JWKS); other services replay revocations
    for the lifetime the issuer publishes, never their own copy of this value.
    """

    issuer: str
    audience: str
    ttl_seconds: int
    # How long a fetched key set is trusted before it is refetched (Envoy's JWKS cache too).
    jwks_refresh_seconds: float = 300.0
    # How much longer the last key set is used while the users service cannot be reached.
    jwks_max_stale_seconds: float = 300.0

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> TokenConfig:
        read = EnvReader(env)
        return cls(
            issuer=read.string("SHOPMESH_JWT_ISSUER", "shopmesh-users"),
            audience=read.string("SHOPMESH_JWT_AUDIENCE", "shopmesh"),
            ttl_seconds=read.integer("SHOPMESH_JWT_TTL_SECONDS", 3600, minimum=1, maximum=7 * 24 * 3600),
            jwks_refresh_seconds=read.number("SHOPMESH_JWKS_REFRESH_SECONDS", 300.0, minimum=0.5, maximum=24 * 3600),
            jwks_max_stale_seconds=read.number(
                "SHOPMESH_JWKS_MAX_STALE_SECONDS", 300.0, minimum=0.0, maximum=24 * 3600
            ),
        )


@dataclass(frozen=True)
class VerifiedToken:
    """What a successful verification established, and what it depended on."""

    caller: Caller
    token_id: str
    kid: str
    # The key object that verified the signature: a refreshed or changed key set holds another.
    key: Any
    # Wall-clock time (the token's `exp`) from which the full check must decide again.
    expires_at: float


class VerifiedTokens:
    """A bounded map from raw token to its VerifiedToken; the oldest entry goes first when full."""

    def __init__(self, max_entries: int) -> None:
        self._max_entries = max_entries
        self._entries: dict[str, VerifiedToken] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, token: str) -> VerifiedToken | None:
        return self._entries.get(token)

    def put(self, token: str, verified: VerifiedToken) -> None:
        if self._max_entries <= 0:
            return
        self._entries.pop(token, None)
        while len(self._entries) >= self._max_entries:
            del self._entries[next(iter(self._entries))]
        self._entries[token] = verified

    def drop(self, token: str) -> None:
        self._entries.pop(token, None)


def invalid(message: str, reason: str) -> Unauthenticated:
    return Unauthenticated(message, reason=reason, domain="auth")


class JwtVerifier:
    """Verifies bearer tokens; see the module docstring."""

    def __init__(
        self,
        config: TokenConfig,
        jwks_source: JwksSource,
        revocations: RevocationCheck,
        *,
        min_refresh_gap_seconds: float = 5.0,
        leeway_seconds: float = 5.0,
        clock: Clock = time.monotonic,
        wall_clock: Clock = time.time,
        max_cached_tokens: int = MAX_CACHED_TOKENS,
    ) -> None:
        self._config = config
        self._jwks_source = jwks_source
        self._revocations = revocations
        self._keys: dict[str, Any] = {}
        self._fetched_at = float("-inf")
        self._attempted_at = float("-inf")
        # Never wait longer between attempts than the set may live.
        self._min_gap = min(min_refresh_gap_seconds, config.jwks_refresh_seconds)
        self._leeway = leeway_seconds
        self._clock = clock
        # Token expiry is wall-clock time (what PyJWT compares `exp` with).
        self._wall_clock = wall_clock
        self._refresh_lock = asyncio.Lock()
        self._verified = VerifiedTokens(max_cached_tokens)

    def _age(self) -> float:
        return self._clock() - self._fetched_at

    def _expired(self) -> bool:
        return self._age() >= self._config.jwks_refresh_seconds

    async def _refresh(self, *, unknown_kid: str | None = None) -> None:
        """Refetch the key set unless another caller just did, or a recent attempt failed."""
        async with self._refresh_lock:
            if unknown_kid is None and not self._expired():
                return  # a concurrent caller refreshed it
            if unknown_kid is not None and unknown_kid in self._keys:
                return
            if self._clock() - self._attempted_at < self._min_gap:
                return  # rate limit: an unknown kid or a failing source must not cause a fetch per call
            self._attempted_at = self._clock()
            try:
                keys = _parse_jwks(await self._jwks_source())
            except Exception:
                logger.warning("could not refresh the token keys", extra={"key_set_age_seconds": round(self._age(), 1)})
                return
            retired = sorted(set(self._keys) - set(keys))
            if retired:
                logger.info("token keys retired", extra={"kids": retired})
            self._keys = keys
            self._fetched_at = self._clock()

    async def _key(self, kid: str) -> Any:
        if self._expired():
            await self._refresh()
        elif kid not in self._keys:
            await self._refresh(unknown_kid=kid)
        if self._age() >= self._config.jwks_refresh_seconds + self._config.jwks_max_stale_seconds:
            # Fail closed: a set this old may still hold keys the users service retired.
            raise invalid("token keys are unavailable", "KEYS_UNAVAILABLE")
        key = self._keys.get(kid)
        if key is None:
            raise invalid("token signed with an unknown key", "UNKNOWN_KEY")
        return key

    async def is_revoked(self, token_id: str) -> bool:
        """Whether a token verified earlier has been revoked since (long-lived streams ask this)."""
        return await self._revocations.is_revoked(token_id)

    async def verify(self, token: str) -> Caller:
        remembered = self._verified.get(token)
        if remembered is not None:
            # The same refusals as the full check: the key set decides first (stale,
            # retired or unknown key), then expiry, then revocation.
            try:
                key = await self._key(remembered.kid)
            except Unauthenticated:
                self._verified.drop(token)
                raise
            if key is remembered.key and self._wall_clock() < remembered.expires_at:
                await self._refuse_if_revoked(token, remembered.token_id)
                return remembered.caller
            self._verified.drop(token)
        verified = await self._verify_fully(token)
        await self._refuse_if_revoked(token, verified.token_id)
        self._verified.put(token, verified)
        return verified.caller

    async def _refuse_if_revoked(self, token: str, token_id: str) -> None:
        if await self._revocations.is_revoked(token_id):
            self._verified.drop(token)
            raise invalid("token revoked", "TOKEN_REVOKED")

    async def _verify_fully(self, token: str) -> VerifiedToken:
        """Signature and claims (not revocation): the caller, and what the check depended on."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise invalid("malformed token", "TOKEN_MALFORMED") from None
        if header.get("alg") != ALGORITHM:
            raise invalid("token algorithm not accepted", "TOKEN_ALGORITHM")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise invalid("token has no key id", "TOKEN_MALFORMED")
        key = await self._key(kid)
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=self._config.audience,
                issuer=self._config.issuer,
                leeway=self._leeway,
                options={"require": REQUIRED_CLAIMS},
            )
        except jwt.ExpiredSignatureError:
            raise invalid("token expired", "TOKEN_EXPIRED") from None
        except jwt.InvalidAudienceError:
            raise invalid("token not meant for this audience", "TOKEN_AUDIENCE") from None
        except jwt.InvalidIssuerError:
            raise invalid("token from an unknown issuer", "TOKEN_ISSUER") from None
        except jwt.PyJWTError:
            raise invalid("invalid token", "TOKEN_INVALID") from None
        role = claims.get("role")
        if role not in ROLES:
            raise invalid("token carries no valid role", "TOKEN_INVALID")
        token_id = str(claims["jti"])
        expires_at = float(claims["exp"])
        caller = Caller(user_id=str(claims["sub"]), role=str(role), token_id=token_id, token_expires_at=expires_at)
        return VerifiedToken(caller, token_id, kid, key, expires_at)


def _parse_jwks(jwks: Mapping[str, Any]) -> dict[str, Any]:
    """The EdDSA keys of a JWKS by key id; a malformed key fails the whole fetch."""
    keys = {}
    for jwk in jwks.get("keys", []):
        if jwk.get("alg") == ALGORITHM and jwk.get("kid"):
            keys[str(jwk["kid"])] = jwt.PyJWK(dict(jwk), algorithm=ALGORITHM).key
    return keys
