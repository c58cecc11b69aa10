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
from shopmesh_platform.runner import run_service
from shopmesh_platform.runtime import Runtime
from shopmesh_users.domain import Users
from shopmesh_users.issuer import TokenIssuer
from shopmesh_users.keys import KeyStore
from shopmesh_users.passwords import Passwords
from shopmesh_users.servicer import UserServicer, binding
from shopmesh_users.sessions import SessionTable


async def serve(env: Mapping[str, str]) -> None:
    runtime = Runtime.from_env("users", env)
    read = EnvReader(env)
    key_dir = read.optional("SHOPMESH_JWT_KEY_DIR")
    if key_dir is None:
        raise ConfigError("SHOPMESH_JWT_KEY_DIR must name the directory of the token signing keys")
    generate = read.choice("SHOPMESH_JWT_GENERATE_KEY", "true", ("true", "false")) == "true"
    keys = KeyStore(Path(key_dir), generate_if_missing=generate)
    postgres = await runtime.postgres()
    # The users service issues the tokens: it verifies them with its own keys, and its
    # sessions table is the truth about revocations (the deny-list is for the others).
    sessions = SessionTable(postgres.pool)
    runtime.issuer_auth(keys, sessions)
    # GetMe answers with the account the session check of the same call read.
    users = Users(postgres.pool, Passwords(), TokenIssuer(runtime.tokens, keys), sessions)
    servicer = UserServicer(users, keys, token_lifetime_seconds=runtime.tokens.ttl_seconds)
    await runtime.serve([binding(servicer)])


if __name__ == "__main__":
    run_service(serve)
