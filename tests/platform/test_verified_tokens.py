"""JwtVerifier remembers verified tokens, but never past what the full check would accept:
the key must still be current, the token unexpired, and revocation is asked every call."""

from __future__ import annotations

import time
import uuid
from typing import Any

import jwt
import pytest

from shopmesh_platform.auth.revocations import RevocationList
from shopmesh_platform.auth.tokens import JwtVerifier, VerifiedTokens
from shopmesh_platform.errors import Unauthenticated, Unavailable
from tests.platform.test_tokens import CONFIG, Clock, Jwks, Key, reason_of


class CountingDecode:
    """Wraps jwt.decode to count full signature-and-claims checks."""

    def __init__(self) -> None:
        self.calls = 0
        self._decode = jwt.decode

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return self._decode(*args, **kwargs)


class SwitchableRevocations:
    """A revocation check that can be made unable to answer (e.g. a database outage)."""

    def __init__(self) -> None:
        self.revoked: set[str] = set()
        self.down = False
        self.asked = 0

    async def is_revoked(self, token_id: str) -> bool:
        self.asked += 1
        if self.down:
            raise Unavailable("cannot tell", reason="REVOCATIONS_NOT_LOADED")
        return token_id in self.revoked


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> CountingDecode:
    counting = CountingDecode()
    monkeypatch.setattr("shopmesh_platform.auth.tokens.jwt.decode", counting)
    return counting


def token_with_exp(key: Key, exp: float) -> str:
    claims = {
        "iss": CONFIG.issuer,
        "aud": CONFIG.audience,
        "sub": "user-1",
        "role": "customer",
        "jti": str(uuid.uuid4()),
        "iat": int(time.time()) - 120,
        "exp": int(exp),
    }
    return jwt.encode(claims, key.private, algorithm="EdDSA", headers={"kid": key.kid})


def build(
    source: Jwks, clock: Clock, revocations: Any = None, *, wall: Clock | None = None, size: int = 100
) -> JwtVerifier:
    if revocations is None:
        revocations = RevocationList()
        revocations.mark_loaded()
    return JwtVerifier(
        CONFIG,
        source,
        revocations,
        min_refresh_gap_seconds=5,
        clock=clock,
        wall_clock=wall or time.time,
        max_cached_tokens=size,
    )


async def test_a_verified_token_is_not_checked_again_but_revocation_is(decodes: CountingDecode) -> None:
    key = Key("k")
    revocations = SwitchableRevocations()
    tokens = build(Jwks(key), Clock(), revocations)
    token = key.token()
    first = await tokens.verify(token)
    for _ in range(5):
        assert await tokens.verify(token) == first
    assert decodes.calls == 1
    assert revocations.asked == 6
    assert first.user_id == "user-1" and first.role == "customer"


async def test_a_remembered_token_is_refused_once_revoked_and_forgotten(decodes: CountingDecode) -> None:
    key = Key("k")
    revocations = SwitchableRevocations()
    tokens = build(Jwks(key), Clock(), revocations)
    token = key.token()
    caller = await tokens.verify(token)
    assert caller.token_id is not None
    revocations.revoked.add(caller.token_id)
    assert await reason_of(tokens, token) == "TOKEN_REVOKED"
    assert tokens._verified.get(token) is None
    assert await reason_of(tokens, token) == "TOKEN_REVOKED"
    assert decodes.calls == 2  # the forgotten token went through the full check again


async def test_a_remembered_token_fails_closed_when_revocations_cannot_be_asked() -> None:
    key = Key("k")
    revocations = SwitchableRevocations()
    tokens = build(Jwks(key), Clock(), revocations)
    token = key.token()
    await tokens.verify(token)
    revocations.down = True
    with pytest.raises(Unavailable):
        await tokens.verify(token)
    revocations.down = False
    assert (await tokens.verify(token)).user_id == "user-1"


async def test_a_token_is_remembered_only_until_its_exp(decodes: CountingDecode) -> None:
    key = Key("k")
    wall = Clock()
    wall.now = time.time()
    tokens = build(Jwks(key), Clock(), wall=wall)
    token = token_with_exp(key, wall.now + 600)
    await tokens.verify(token)
    await tokens.verify(token)
    assert decodes.calls == 1
    wall.now += 600  # at exp: the full check decides (PyJWT's own clock and leeway)
    await tokens.verify(token)
    assert decodes.calls == 2


async def test_an_expired_token_is_refused_even_if_it_was_remembered(decodes: CountingDecode) -> None:
    key = Key("k")
    tokens = build(Jwks(key), Clock())
    # Past exp but within the leeway: accepted by the full check, never served from the cache.
    token = token_with_exp(key, time.time() - 2)
    await tokens.verify(token)
    await tokens.verify(token)
    assert decodes.calls == 2
    long_expired = token_with_exp(key, time.time() - 60)
    assert await reason_of(tokens, long_expired) == "TOKEN_EXPIRED"


async def test_a_remembered_token_follows_the_key_set(decodes: CountingDecode) -> None:
    old, new = Key("old"), Key("new")
    source, clock = Jwks(old, new), Clock()
    tokens = build(source, clock)
    token = old.token()
    await tokens.verify(token)

    source.down = True  # the key set ages beyond what may be trusted: fail closed
    clock.now += CONFIG.jwks_refresh_seconds + CONFIG.jwks_max_stale_seconds
    assert await reason_of(tokens, token) == "KEYS_UNAVAILABLE"

    source.down, source.keys = False, [new]  # back, with the old key retired
    clock.now += 5
    assert await reason_of(tokens, token) == "UNKNOWN_KEY"
    assert tokens._verified.get(token) is None


async def test_a_refreshed_key_set_means_one_full_check_again(decodes: CountingDecode) -> None:
    key = Key("k")
    source, clock = Jwks(key), Clock()
    tokens = build(source, clock)
    token = key.token()
    await tokens.verify(token)
    clock.now += CONFIG.jwks_refresh_seconds  # refetched: a new key object, even for the same key
    await tokens.verify(token)
    await tokens.verify(token)
    assert (source.fetches, decodes.calls) == (2, 2)


async def test_a_token_that_fails_is_not_remembered(decodes: CountingDecode) -> None:
    key, stranger = Key("k"), Key("k")  # same kid, another private key: a forged signature
    tokens = build(Jwks(key), Clock())
    forged = stranger.token()
    for _ in range(2):
        with pytest.raises(Unauthenticated):
            await tokens.verify(forged)
    assert len(tokens._verified) == 0


async def test_the_cache_is_bounded(decodes: CountingDecode) -> None:
    key = Key("k")
    tokens = build(Jwks(key), Clock(), size=2)
    first, second, third = key.token(), key.token(), key.token()
    for token in (first, second, third):
        await tokens.verify(token)
    assert len(tokens._verified) == 2
    await tokens.verify(third)
    assert decodes.calls == 3
    await tokens.verify(first)  # the oldest was evicted
    assert decodes.calls == 4


def test_a_size_of_zero_remembers_nothing() -> None:
    cache = VerifiedTokens(0)
    cache.put("token", object())  # type: ignore[arg-type]
    assert len(cache) == 0
