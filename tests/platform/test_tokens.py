"""JwtVerifier's key set: refreshed periodically and on an unknown kid, retired keys
dropped, and refused altogether once it is too old to trust."""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Mapping
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from shopmesh_platform.auth.revocations import RevocationList
from shopmesh_platform.auth.tokens import JwtVerifier, TokenConfig
from shopmesh_platform.errors import Unauthenticated

CONFIG = TokenConfig(
    issuer="issuer", audience="audience", ttl_seconds=3600, jwks_refresh_seconds=60, jwks_max_stale_seconds=30
)


class Clock:
    """Monotonic time the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Key:
    def __init__(self, kid: str) -> None:
        self.kid = kid
        self.private = Ed25519PrivateKey.generate()

    @property
    def jwk(self) -> dict[str, str]:
        raw = self.private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        x = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
        return {"kty": "OKP", "crv": "Ed25519", "x": x, "kid": self.kid, "alg": "EdDSA", "use": "sig"}

    def token(self) -> str:
        now = int(time.time())
        claims = {
            "iss": CONFIG.issuer,
            "aud": CONFIG.audience,
            "sub": "user-1",
            "role": "customer",
            "jti": str(uuid.uuid4()),
            "iat": now,
            "exp": now + 600,
        }
        return jwt.encode(claims, self.private, algorithm="EdDSA", headers={"kid": self.kid})


class Jwks:
    """A JWKS source whose published keys the test changes; counts fetches, can fail."""

    def __init__(self, *keys: Key) -> None:
        self.keys = list(keys)
        self.fetches = 0
        self.down = False

    async def __call__(self) -> Mapping[str, Any]:
        self.fetches += 1
        if self.down:
            raise ConnectionError("users service unreachable")
        return {"keys": [key.jwk for key in self.keys]}


def verifier(source: Jwks, clock: Clock) -> JwtVerifier:
    revocations = RevocationList()
    revocations.mark_loaded()  # replayed (and empty): these tests are about keys
    return JwtVerifier(CONFIG, source, revocations, min_refresh_gap_seconds=5, clock=clock)


async def reason_of(verifier: JwtVerifier, token: str) -> str:
    with pytest.raises(Unauthenticated) as refused:
        await verifier.verify(token)
    return refused.value.reason


async def test_a_retired_key_is_refused_after_the_refresh_period() -> None:
    old, new = Key("old"), Key("new")
    source, clock = Jwks(old, new), Clock()
    tokens = verifier(source, clock)
    old_token = old.token()
    assert (await tokens.verify(old_token)).user_id == "user-1"

    source.keys = [new]  # the users service retired the old key
    clock.now += CONFIG.jwks_refresh_seconds - 1
    assert (await tokens.verify(old_token)).user_id == "user-1"  # still within the period
    clock.now += 1
    assert await reason_of(tokens, old_token) == "UNKNOWN_KEY"
    assert (await tokens.verify(new.token())).user_id == "user-1"


async def test_a_new_key_is_fetched_at_once_and_unknown_kids_are_rate_limited() -> None:
    first, added = Key("first"), Key("added")
    source, clock = Jwks(first), Clock()
    tokens = verifier(source, clock)
    await tokens.verify(first.token())
    assert source.fetches == 1

    source.keys.append(added)
    clock.now += 5
    assert (await tokens.verify(added.token())).user_id == "user-1"
    assert source.fetches == 2

    # Tokens naming keys nobody published cause at most one fetch per gap.
    stranger = Key("stranger")
    for _ in range(10):
        assert await reason_of(tokens, stranger.token()) == "UNKNOWN_KEY"
    assert source.fetches == 2
    clock.now += 5
    assert await reason_of(tokens, stranger.token()) == "UNKNOWN_KEY"
    assert source.fetches == 3


async def test_the_last_key_set_outlives_a_short_outage_but_not_a_long_one() -> None:
    key = Key("only")
    source, clock = Jwks(key), Clock()
    tokens = verifier(source, clock)
    await tokens.verify(key.token())

    source.down = True
    clock.now += CONFIG.jwks_refresh_seconds + CONFIG.jwks_max_stale_seconds - 1
    assert (await tokens.verify(key.token())).user_id == "user-1"
    clock.now += 1
    assert await reason_of(tokens, key.token()) == "KEYS_UNAVAILABLE"

    source.down = False
    clock.now += 5
    assert (await tokens.verify(key.token())).user_id == "user-1"


async def test_without_any_key_set_every_token_is_refused() -> None:
    key = Key("only")
    source, clock = Jwks(key), Clock()
    source.down = True
    assert await reason_of(verifier(source, clock), key.token()) == "KEYS_UNAVAILABLE"


def test_the_refresh_period_is_a_setting() -> None:
    config = TokenConfig.from_env({"SHOPMESH_JWKS_REFRESH_SECONDS": "2", "SHOPMESH_JWKS_MAX_STALE_SECONDS": "0"})
    assert (config.jwks_refresh_seconds, config.jwks_max_stale_seconds) == (2.0, 0.0)
    defaults = TokenConfig.from_env({})
    assert (defaults.jwks_refresh_seconds, defaults.jwks_max_stale_seconds) == (300.0, 300.0)
