"""The users service's signing keys: generated once, newest signs, all published."""

from __future__ import annotations

import os
import time
from pathlib import Path

import jwt
import pytest

from shopmesh_platform.config import ConfigError
from shopmesh_platform.tokens import TokenConfig
from shopmesh_users.issuer import TokenIssuer
from shopmesh_users.keys import KeyStore, write_new_key


def test_first_key_is_generated_once(tmp_path: Path) -> None:
    first = KeyStore(tmp_path, generate_if_missing=True)
    again = KeyStore(tmp_path, generate_if_missing=True)
    assert first.signing_key.kid == again.signing_key.kid
    assert len(list(tmp_path.glob("*.pem"))) == 1
    assert next(tmp_path.glob("*.pem")).stat().st_mode & 0o077 == 0


def test_missing_key_without_generation_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="SHOPMESH_JWT_KEY_DIR"):
        KeyStore(tmp_path, generate_if_missing=False)


def test_a_second_key_signs_while_the_old_one_still_verifies(tmp_path: Path) -> None:
    old = KeyStore(tmp_path, generate_if_missing=True)
    config = TokenConfig(issuer="i", audience="a", ttl_seconds=60)
    old_token = TokenIssuer(config, old).issue("user-1", "customer").token
    newer = write_new_key(tmp_path)
    later = time.time() + 10
    os.utime(tmp_path / f"{newer.kid}.pem", (later, later))
    rotated = KeyStore(tmp_path, generate_if_missing=False)
    assert rotated.signing_key.kid == newer.kid
    published = {key["kid"]: jwt.PyJWK(key).key for key in rotated.jwks()["keys"]}
    assert set(published) == {old.signing_key.kid, newer.kid}
    new_token = TokenIssuer(config, rotated).issue("user-1", "customer").token
    for token in (old_token, new_token):
        kid = jwt.get_unverified_header(token)["kid"]
        claims = jwt.decode(token, published[kid], algorithms=["EdDSA"], audience="a", issuer="i")
        assert claims["sub"] == "user-1"
    assert jwt.get_unverified_header(new_token)["kid"] == newer.kid
