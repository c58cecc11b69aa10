"""The users service's signing keys and the JWKS that publishes them.

Keys are Ed25519, one PEM file per key in the key directory
(SHOPMESH_JWT_KEY_DIR); the users service names the keys it generates by key id
(the RFC 7638 thumbprint), any name works. Every key in the directory is
published, so tokens signed with an older key keep verifying until its file is
removed (after its last token expired). Which key signs is said explicitly by
the file `signing-key` in the same directory (the signing key's file name):
file times cannot say it, as every file of a Kubernetes secret mount has the
same one. A directory holding a single key needs no marker.
Locally the first key (and its marker) is generated on first start; in
production the directory is a mounted secret and generation is off.
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

SIGNING_MARKER = "signing-key"


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


def _write_private(path: Path, content: bytes) -> None:
    """Write a file readable only by its owner, replacing any old one atomically."""
    temporary = path.parent / f".{path.name}.tmp"
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(content)
    temporary.replace(path)


def mark_signing(directory: Path, file_name: str) -> None:
    """Make the key in `file_name` the one that signs (from the next start)."""
    _write_private(directory / SIGNING_MARKER, f"{file_name}\n".encode())


def write_new_key(directory: Path) -> SigningKey:
    """Create a key file readable only by its owner (published, not yet signing)."""
    private_key = Ed25519PrivateKey.generate()
    kid = thumbprint(private_key)
    pem = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    directory.mkdir(parents=True, exist_ok=True)
    _write_private(directory / f"{kid}.pem", pem)
    return SigningKey(kid, private_key)


class KeyStore:
    """The keys in one directory and the one that signs, loaded at start."""

    def __init__(self, directory: Path, *, generate_if_missing: bool) -> None:
        self._directory = directory
        if generate_if_missing and not list(directory.glob("*.pem")):
            first = write_new_key(directory)
            mark_signing(directory, f"{first.kid}.pem")
        keys = self._load()
        if not keys:
            raise ConfigError(f"SHOPMESH_JWT_KEY_DIR: no signing key (*.pem) in {directory}")
        self._keys = list(keys.values())
        self._signing = keys[self._signing_file(keys)]

    def _load(self) -> dict[str, SigningKey]:
        keys = {}
        for path in sorted(self._directory.glob("*.pem")):
            loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
            if not isinstance(loaded, Ed25519PrivateKey):
                raise ConfigError(f"SHOPMESH_JWT_KEY_DIR: {path.name} is not an Ed25519 private key")
            keys[path.name] = SigningKey(thumbprint(loaded), loaded)
        return keys

    def _signing_file(self, keys: dict[str, SigningKey]) -> str:
        marker = self._directory / SIGNING_MARKER
        if not marker.exists():
            if len(keys) == 1:
                return next(iter(keys))
            raise ConfigError(
                f"SHOPMESH_JWT_KEY_DIR: {len(keys)} keys in {self._directory} and no {SIGNING_MARKER} file "
                "naming the one that signs"
            )
        named = marker.read_text().strip()
        if named not in keys:
            raise ConfigError(f"SHOPMESH_JWT_KEY_DIR: {SIGNING_MARKER} names {named!r}, which is not a key file there")
        return named

    @property
    def signing_key(self) -> SigningKey:
        return self._signing

    def jwks(self) -> dict[str, Any]:
        return {"keys": [key.jwk for key in self._keys]}
