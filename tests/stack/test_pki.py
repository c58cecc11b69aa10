"""The local CA: SPIFFE identities, reissue of missing or expiring certificates."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from cryptography import x509

from shopmesh_stack.pki import LocalCA


def serial(path: Path) -> int:
    return x509.load_pem_x509_certificate(path.read_bytes()).serial_number


def test_issues_once_and_reissues_only_what_is_not_current(tmp_path: Path) -> None:
    ca = LocalCA(tmp_path, "example.test", "shopmesh", dt.timedelta(hours=24))
    assert ca.ensure(["users", "edge"]) == ["users", "edge"]
    first = serial(ca.files("users").cert)
    assert ca.ensure(["users", "edge"]) == []  # all current: nothing issued
    assert serial(ca.files("users").cert) == first
    ca.files("edge").cert.unlink()
    assert ca.ensure(["users", "edge"]) == ["edge"]
    assert (tmp_path / "ca.key").stat().st_mode & 0o077 == 0
    assert ca.files("users").key.stat().st_mode & 0o077 == 0


def test_expiring_certificates_are_reissued(tmp_path: Path) -> None:
    short = LocalCA(tmp_path, "example.test", "shopmesh", dt.timedelta(minutes=30))
    short.ensure(["users"])
    before = serial(short.files("users").cert)
    # Valid for 30 more minutes: within the one-hour renewal window.
    assert short.ensure(["users"]) == ["users"]
    assert serial(short.files("users").cert) != before


def test_a_changed_trust_domain_reissues(tmp_path: Path) -> None:
    LocalCA(tmp_path, "old.test", "shopmesh", dt.timedelta(hours=24)).ensure(["orders"])
    moved = LocalCA(tmp_path, "new.test", "shopmesh", dt.timedelta(hours=24))
    assert moved.ensure(["orders"]) == ["orders"]
    cert = x509.load_pem_x509_certificate(moved.files("orders").cert.read_bytes())
    uris = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.UniformResourceIdentifier
    )
    assert uris == ["spiffe://new.test/ns/shopmesh/sa/orders"]
