"""Issues the EdDSA JWTs that every service verifies (shopmesh_platform.auth.tokens)."""

from __future__ import annotations

import datetime as dt
import uuid

import jwt

from shopmesh_platform.auth.tokens import ALGORITHM, TokenConfig
from shopmesh_users.keys import KeyStore
from shopmesh_users.records import IssuedToken


class TokenIssuer:
    def __init__(self, config: TokenConfig, keys: KeyStore) -> None:
        self._config = config
        self._keys = keys

    def issue(self, user_id: str, role: str) -> IssuedToken:
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        expires_at = now + dt.timedelta(seconds=self._config.ttl_seconds)
        token_id = str(uuid.uuid4())
        claims = {
            "iss": self._config.issuer,
            "aud": self._config.audience,
            "sub": user_id,
            "role": role,
            "jti": token_id,
            "iat": int(now.timestamp()),
            "exp": int(expires_at.timestamp()),
        }
        key = self._keys.signing_key
        token = jwt.encode(claims, key.private_key, algorithm=ALGORITHM, headers={"kid": key.kid})
        return IssuedToken(token=token, token_id=token_id, expires_at=expires_at, claims=claims)
