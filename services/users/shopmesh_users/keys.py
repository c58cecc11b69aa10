"""The users service's signing keys and the JWKS that publishes them.

Keys are Ed25519, one PEM file per key in the key directory
(SHOPMESH_JWT_KEY_DIR), named by key id (the RFC 7638 thumbprint). The newest
key signs; every key in the directory is published, so tokens signed with an
older key keep verifying until it is removed (after its last token expired).
Locally the first key is generated on first start; in production the
directory is a mounted secret and generation is off.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from shopmesh_platform.config import ConfigError


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass(frozen=True)
class SigningKey:
    kid: str
    private_key: Ed25519PrivateKey

    @property
    def jwk(self) -> dict[str, str]:
        raw = self.private_key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return {"kty": "OKP", "crv": "Ed25519", "x": _b64url(raw), "kid": self.kid, "alg": "EdDSA", "use": "sig"}


def thumbprint(private_key: Ed25519PrivateKey) -> str:
    """RFC 7638 JWK thumbprint of the public key: a stable key id."""
    raw = private_key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    canonical = json.dumps({"crv": "Ed25519", "kty": "OKP", "x": _b64url(raw)}, separators=(",", ":"), sort_keys=True)
    return _b64url(hashlib.sha256(canonical.encode()).digest())


def write_new_key(directory: Path) -> SigningKey:
    """Create a key file readable only by its owner."""
    private_key = Ed25519PrivateKey.generate()
    kid = thumbprint(private_key)
    pem = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    directory.mkdir(parents=True, exist_ok=True)
    temporary = directory / f".{kid}.tmp"
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(pem)
    temporary.replace(directory / f"{kid}.pem")
    return SigningKey(kid, private_key)


class KeyStore:
    """The keys in one directory, loaded at start."""

    def __init__(self, directory: Path, *, generate_if_missing: bool) -> None:
        self._directory = directory
        if generate_if_missing and not list(directory.glob("*.pem")):
            write_new_key(directory)
        self._keys = self._load()
        if not self._keys:
            raise ConfigError(f"SHOPMESH_JWT_KEY_DIR: no signing key (*.pem) in {directory}")

    def _load(self) -> list[SigningKey]:
        keys = []
        # Oldest first, so the last one (newest) signs.
        for path in sorted(self._directory.glob("*.pem"), key=lambda p: (p.stat().st_mtime, p.name)):
            loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
            if not isinstance(loaded, Ed25519PrivateKey):
                raise ConfigError(f"SHOPMESH_JWT_KEY_DIR: {path.name} is not an Ed25519 private key")
            keys.append(SigningKey(thumbprint(loaded), loaded))
        return keys

    @property
    def signing_key(self) -> SigningKey:
        return self._keys[-1]

    def jwks(self) -> dict[str, Any]:
        return {"keys": [key.jwk for key in self._keys]}

    async def jwks_async(self) -> dict[str, Any]:
        return self.jwks()
