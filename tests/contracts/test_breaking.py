"""The breaking-change gate bites: a removed field or a renamed RPC fails it.

Each case copies the contracts, breaks the copy one way and runs the same check
as `make breaking` (shopmesh_gen.breaking) with the untouched contracts as baseline.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from shopmesh_gen import breaking

USER_SERVICE = Path("shopmesh/user/v1/user_service.proto")


def broken_copy(tmp_path: Path, old: str, new: str) -> Path:
    copy = tmp_path / "proto"
    shutil.copytree(breaking.PROTO_ROOT, copy)
    target = copy / USER_SERVICE
    text = target.read_text()
    assert text.count(old) == 1, f"{old!r} must occur once in {USER_SERVICE}"
    target.write_text(text.replace(old, new))
    return copy


def test_unchanged_contracts_pass(tmp_path: Path) -> None:
    result = breaking.check(broken_copy(tmp_path, "rpc GetMe(", "rpc GetMe("), breaking.PROTO_ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("old", "new", "complaint"),
    [
        # The token field of RegisterUserResponse disappears.
        ("  string token = 2;\n}", "}", 'Previously present field "2" with name "token"'),
        ("rpc GetMe(", "rpc GetMyself(", 'Previously present RPC "GetMe"'),
    ],
    ids=["removed-field", "renamed-rpc"],
)
def test_breaking_change_fails(tmp_path: Path, old: str, new: str, complaint: str) -> None:
    result = breaking.check(broken_copy(tmp_path, old, new), breaking.PROTO_ROOT)
    assert result.returncode != 0
    assert complaint in result.stdout + result.stderr


def test_baseline_is_one_commit_id() -> None:
    commit = breaking.baseline_commit()
    assert len(commit) == 40
    assert int(commit, 16) >= 0
