"""OWASP API2:2023 Broken Authentication.

What shopmesh does: the users service issues EdDSA-signed JWTs (issuer, audience,
`exp`, `iat`, `jti`, `sub`, `role` all required; lifetime published with the JWKS)
and stores passwords only as argon2id hashes. Every token is verified twice: by
Envoy's jwt_authn at the edge (keys from the issuer's JWKS, alg pinned, expiry
required) and again by every service's auth interceptor, which also refuses
revoked tokens (a logout or suspension publishes SessionRevoked, which feeds every
service's deny-list; services fail closed until it has been replayed). A wrong
password and an unknown email get the same answer. Logins are limited per client
address at the edge (`users.Login`: 10 a minute by default), before any password
is checked.

What these tests prove: forged tokens of every kind (tampered claims, `alg: none`,
HS256 signed with the public key, unknown key id, wrong issuer or audience,
expired, no expiry at all, garbage) and missing tokens are refused by the edge
(401) and by each service called directly (UNAUTHENTICATED); a token stops working
everywhere at logout; issued tokens live exactly the published lifetime; login
failures do not tell whether the account exists; and guessing passwords from one
address is cut off once its budget is spent, even for the right password, while
another address still signs in.
"""

from __future__ import annotations

import base64
import json

import grpc
import jwt
import pytest

from shopmesh_stack.components import Edge
from shopmesh_stack.stack import Stack
from tests.declared import SERVICES
from tests.integration.forged_tokens import FORGED_KINDS, claims, forged, signing_key
from tests.integration.helpers import http
from tests.integration.owasp.conftest import BUDGET
from tests.integration.owasp.support import new_account, request_from
from tests.integration.test_revocations import EDGE_CALLS, assert_refused_everywhere, edge_status, status_of
from tests.integration.users_client import PASSWORD, Account, call, unique_email

LOGIN = "/api/v1/users/login"


@pytest.fixture(scope="module")
def account(stack: Stack) -> Account:
    return new_account(stack)


def without_expiry(stack: Stack, user_id: str) -> str:
    """A token signed with the issuer's real key whose claims carry no `exp`."""
    kid, key = signing_key(stack)
    body = claims(user_id)
    del body["exp"]
    return jwt.encode(body, key, algorithm="EdDSA", headers={"kid": kid})


def payload(token: str) -> dict[str, int]:
    part = token.split(".")[1]
    decoded: dict[str, int] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return decoded


@pytest.mark.parametrize("kind", [*FORGED_KINDS, "no_expiry"])
def test_forged_tokens_are_refused_at_the_edge_and_by_every_service(stack: Stack, account: Account, kind: str) -> None:
    tokens = forged(stack, account.id, account.token) | {"no_expiry": without_expiry(stack, account.id)}
    token = tokens[kind]
    for service in SERVICES:
        assert edge_status(stack, service, token) == 401, service
        assert status_of(stack, service, token) == grpc.StatusCode.UNAUTHENTICATED, service


def test_user_routes_need_a_token(stack: Stack) -> None:
    for service, (method, path, body, _) in EDGE_CALLS.items():
        reply = http(stack, method, path, body)
        assert reply.status == 401, (service, reply.body)


def test_issued_tokens_live_the_published_lifetime(stack: Stack, account: Account) -> None:
    lifetime = http(stack, "GET", "/.well-known/jwks.json").json()["tokenLifetimeSeconds"]
    assert 0 < lifetime <= 24 * 3600
    claims_of = payload(account.token)
    assert claims_of["exp"] - claims_of["iat"] == lifetime
    header = json.loads(base64.urlsafe_b64decode(account.token.split(".")[0] + "=="))
    assert header["alg"] == "EdDSA"


def test_a_token_stops_working_everywhere_at_logout(stack: Stack) -> None:
    account = new_account(stack)
    assert call(stack, "POST", "/api/v1/users/logout", account, {}).status == 200
    assert_refused_everywhere(stack, account.token)
    # The account itself is fine: signing in again gives a working token.
    login = call(stack, "POST", LOGIN, body={"email": account.email, "password": PASSWORD})
    assert login.status == 200
    fresh = Account(account.id, account.email, login.json()["token"])
    assert call(stack, "GET", "/api/v1/users/me", fresh).status == 200


def test_a_login_failure_does_not_tell_whether_the_account_exists(stack: Stack, account: Account) -> None:
    wrong_password = call(stack, "POST", LOGIN, body={"email": account.email, "password": "not the password"})
    unknown_email = call(stack, "POST", LOGIN, body={"email": unique_email("nobody"), "password": "not the password"})
    assert wrong_password.status == unknown_email.status == 401
    assert wrong_password.body == unknown_email.body
    assert b"token" not in wrong_password.body


def test_password_guessing_from_one_address_is_cut_off(stack: Stack, account: Account, budget_edge: Edge) -> None:
    guesser, other = "127.0.0.61", "127.0.0.62"
    guesses = [
        request_from(budget_edge.port, guesser, "POST", LOGIN, {"email": account.email, "password": f"guess-{n}"})
        for n in range(BUDGET)
    ]
    assert [reply.status for reply in guesses] == [401] * BUDGET
    # The budget is spent: even the right password is refused before it is checked.
    right = {"email": account.email, "password": PASSWORD}
    refused = request_from(budget_edge.port, guesser, "POST", LOGIN, right)
    assert refused.status == 429, refused.body
    assert refused.json()["code"] == 8 and b"token" not in refused.body
    # The account is not locked out: its owner signs in from elsewhere.
    assert request_from(budget_edge.port, other, "POST", LOGIN, right).status == 200
