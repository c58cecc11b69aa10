"""The users service's signing keys: generated once, the marked one signs, all published."""

from __future__ import annotations

import os
import time
from pathlib import Path

import jwt
import pytest

from shopmesh_platform.auth.tokens import TokenConfig
from shopmesh_platform.config import ConfigError
from shopmesh_users.issuer import TokenIssuer
from shopmesh_users.keys import SIGNING_MARKER, KeyStore, mark_signing, write_new_key


def test_first_key_is_generated_once(tmp_path: Path) -> None:
    first = KeyStore(tmp_path, generate_if_missing=True)
    again = KeyStore(tmp_path, generate_if_missing=True)
    assert first.signing_key.kid == again.signing_key.kid
    assert len(list(tmp_path.glob("*.pem"))) == 1
    assert next(tmp_path.glob("*.pem")).stat().st_mode & 0o077 == 0
    assert (tmp_path / SIGNING_MARKER).read_text().strip() == f"{first.signing_key.kid}.pem"


def test_missing_key_without_generation_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="SHOPMESH_JWT_KEY_DIR"):
        KeyStore(tmp_path, generate_if_missing=False)


def test_a_second_key_signs_while_the_old_one_still_verifies(tmp_path: Path) -> None:
    old = KeyStore(tmp_path, generate_if_missing=True)
    config = TokenConfig(issuer="i", audience="a", ttl_seconds=60)
    old_token = TokenIssuer(config, old).issue("user-1", "customer").token
    newer = write_new_key(tmp_path)
    published_only = KeyStore(tmp_path, generate_if_missing=False)
    assert published_only.signing_key.kid == old.signing_key.kid
    assert {key["kid"] for key in published_only.jwks()["keys"]} == {old.signing_key.kid, newer.kid}
    mark_signing(tmp_path, f"{newer.kid}.pem")
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


def same_time(directory: Path) -> None:
    """Every file with one modification time, as on a Kubernetes secret mount."""
    stamp = time.time()
    for path in directory.iterdir():
        os.utime(path, (stamp, stamp))


@pytest.mark.parametrize("signer", [0, 1])
def test_the_marker_chooses_the_signing_key_whatever_the_file_times(tmp_path: Path, signer: int) -> None:
    keys = sorted((write_new_key(tmp_path) for _ in range(2)), key=lambda key: key.kid)
    mark_signing(tmp_path, f"{keys[signer].kid}.pem")
    same_time(tmp_path)
    assert KeyStore(tmp_path, generate_if_missing=False).signing_key.kid == keys[signer].kid


def test_keys_with_any_file_name_are_published_and_can_sign(tmp_path: Path) -> None:
    first, second = write_new_key(tmp_path), write_new_key(tmp_path)
    (tmp_path / f"{first.kid}.pem").rename(tmp_path / "2024-01.pem")
    (tmp_path / f"{second.kid}.pem").rename(tmp_path / "2025-01.pem")
    mark_signing(tmp_path, "2024-01.pem")
    store = KeyStore(tmp_path, generate_if_missing=False)
    assert store.signing_key.kid == first.kid
    assert {key["kid"] for key in store.jwks()["keys"]} == {first.kid, second.kid}


def test_several_keys_without_a_marker_is_a_config_error(tmp_path: Path) -> None:
    write_new_key(tmp_path)
    write_new_key(tmp_path)
    with pytest.raises(ConfigError, match=SIGNING_MARKER):
        KeyStore(tmp_path, generate_if_missing=True)


def test_a_marker_naming_a_missing_key_is_a_config_error(tmp_path: Path) -> None:
    write_new_key(tmp_path)
    mark_signing(tmp_path, "retired.pem")
    with pytest.raises(ConfigError, match="retired.pem"):
        KeyStore(tmp_path, generate_if_missing=False)
