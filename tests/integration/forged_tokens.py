"""Tokens that must all be refused, built from the stack's real signing key where
that makes the forgery stronger (a valid signature over bad claims)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from shopmesh_stack.stack import Stack
from shopmesh_users.keys import KeyStore

# Every kind `forged()` returns: all must be refused, at the edge and by the services.
FORGED_KINDS = (
    "expired",
    "tampered",
    "wrong_audience",
    "wrong_issuer",
    "alg_none",
    "hs256_with_public_key",
    "unknown_kid",
    "garbage",
)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def signing_key(stack: Stack) -> tuple[str, Ed25519PrivateKey]:
    signing = KeyStore(stack.settings.data_dir / "users" / "jwt-keys", generate_if_missing=False).signing_key
    return signing.kid, signing.private_key


def claims(user_id: str, **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {
        "iss": "shopmesh-users",
        "aud": "shopmesh",
        "sub": user_id,
        "role": "customer",
        "jti": str(uuid.uuid4()),
        "iat": now,
        "exp": now + 600,
    }
    base.update(overrides)
    return base


def forged(stack: Stack, user_id: str, real_token: str) -> dict[str, str]:
    """Name -> token; every one of them must be refused."""
    kid, key = signing_key(stack)
    now = int(time.time())
    header_b64, payload_b64, signature_b64 = real_token.split(".")
    payload = json.loads(base64.urlsafe_b64decode(payload_b64 + "=="))
    payload["role"] = "admin"
    tampered = f"{header_b64}.{_b64(json.dumps(payload).encode())}.{signature_b64}"

    none_header = _b64(json.dumps({"alg": "none", "typ": "JWT", "kid": kid}).encode())
    alg_none = f"{none_header}.{_b64(json.dumps(claims(user_id)).encode())}."

    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    hs_header = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
    hs_payload = _b64(json.dumps(claims(user_id)).encode())
    hs_signature = hmac.new(public_pem, f"{hs_header}.{hs_payload}".encode(), hashlib.sha256).digest()

    def sign(body: dict[str, Any], with_key: Ed25519PrivateKey = key, key_id: str = kid) -> str:
        return jwt.encode(body, with_key, algorithm="EdDSA", headers={"kid": key_id})

    return {
        "expired": sign(claims(user_id, iat=now - 7200, exp=now - 3600)),
        "tampered": tampered,
        "wrong_audience": sign(claims(user_id, aud="someone-else")),
        "wrong_issuer": sign(claims(user_id, iss="https://evil.example")),
        "alg_none": alg_none,
        "hs256_with_public_key": f"{hs_header}.{hs_payload}.{_b64(hs_signature)}",
        "unknown_kid": sign(claims(user_id), Ed25519PrivateKey.generate(), "not-a-published-key"),
        "garbage": "not.a.token",
    }


def valid_for(stack: Stack, user_id: str, role: str = "customer") -> str:
    """A correctly signed token (as the users service would issue) for tests of roles."""
    kid, key = signing_key(stack)
    return jwt.encode(claims(user_id, role=role), key, algorithm="EdDSA", headers={"kid": kid})
