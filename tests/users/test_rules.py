"""The users domain's pure rules: no database, no grpc, no stack.

Who may see an account, who may sign in, how emails are compared, what a
profile change touches, and how a token id travels (hashed, never itself).
"""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest

from shopmesh_platform.auth.revocations import token_id_hash
from shopmesh_platform.context import Caller
from shopmesh_users.domain import may_see, may_sign_in, normalize_email, to_timestamp
from shopmesh_users.records import ProfileChanges

ADA = "0b7e6f8e-1111-4c1e-9d7a-000000000001"
BOB = "0b7e6f8e-2222-4c1e-9d7a-000000000002"


@pytest.mark.parametrize(
    ("caller", "account", "allowed"),
    [
        (Caller(user_id=ADA, role="customer"), ADA, True),
        (Caller(user_id=ADA, role="customer"), BOB, False),
        (Caller(user_id=ADA, role="admin"), BOB, True),
        (Caller(service_identity="payments"), ADA, False),
    ],
)
def test_an_account_is_seen_by_its_owner_and_admins_only(caller: Caller, account: str, allowed: bool) -> None:
    assert may_see(caller, account) is allowed


@pytest.mark.parametrize(("status", "allowed"), [("active", True), ("suspended", False), ("deleted", False)])
def test_only_active_accounts_sign_in(status: str, allowed: bool) -> None:
    assert may_sign_in(status) is allowed


def test_emails_compare_lower_cased() -> None:
    assert normalize_email("Ada.Lovelace@Example.COM") == "ada.lovelace@example.com"


def test_a_profile_change_touches_only_the_fields_it_sets() -> None:
    changes = ProfileChanges(first_name="Ada", bio="analyst", date_of_birth=dt.date(1815, 12, 10))
    assert changes.user_columns() == {"first_name": "Ada", "date_of_birth": dt.date(1815, 12, 10)}
    assert changes.profile_columns() == {"bio": "analyst"}
    assert ProfileChanges().user_columns() == {} and ProfileChanges().profile_columns() == {}


def test_timestamps_keep_the_instant() -> None:
    instant = dt.datetime(2025, 3, 1, 12, 30, 15, tzinfo=dt.UTC)
    assert to_timestamp(instant).ToDatetime(tzinfo=dt.UTC) == instant


def test_a_token_id_travels_as_its_sha256() -> None:
    hashed = token_id_hash("jti-1")
    assert hashed == hashlib.sha256(b"jti-1").hexdigest()
    assert "jti-1" not in hashed
