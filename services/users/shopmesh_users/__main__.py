"""Entry point: `python -m shopmesh_users` (settings from the environment).

Beyond the platform's settings: SHOPMESH_JWT_KEY_DIR (signing keys, and the
`signing-key` file naming the one that signs; required), SHOPMESH_JWT_GENERATE_KEY
(create the first key if the directory is empty; default true, set false in
production where keys are mounted secrets).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from shopmesh_platform.config import ConfigError, EnvReader
from shopmesh_platform.runner import run_service, serve_with_postgres
from shopmesh_users.domain import Users
from shopmesh_users.issuer import TokenIssuer
from shopmesh_users.keys import KeyStore
from shopmesh_users.passwords import Passwords
from shopmesh_users.servicer import UserServicer, binding


async def serve(env: Mapping[str, str]) -> None:
    read = EnvReader(env)
    key_dir = read.optional("SHOPMESH_JWT_KEY_DIR")
    if key_dir is None:
        raise ConfigError("SHOPMESH_JWT_KEY_DIR must name the directory of the token signing keys")
    generate = read.choice("SHOPMESH_JWT_GENERATE_KEY", "true", ("true", "false")) == "true"
    keys = KeyStore(Path(key_dir), generate_if_missing=generate)
    await serve_with_postgres(
        "users",
        env,
        lambda runtime, pool: [
            binding(
                UserServicer(Users(pool, Passwords(), TokenIssuer(runtime.tokens, keys), runtime.revocations), keys)
            )
        ],
        jwks_source=lambda runtime: keys.jwks_async,
    )


if __name__ == "__main__":
    run_service(serve)
