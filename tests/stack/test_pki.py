"""The local CA: SPIFFE identities, reissue of what is not current, private atomic writes."""

from __future__ import annotations

import datetime as dt
import os
import stat
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

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


def verifies_against(ca: LocalCA, identity: str) -> bool:
    cert = x509.load_pem_x509_certificate(ca.files(identity).cert.read_bytes())
    try:
        cert.verify_directly_issued_by(x509.load_pem_x509_certificate(ca.ca_file.read_bytes()))
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def test_a_certificate_from_another_ca_with_the_same_name_is_reissued(tmp_path: Path) -> None:
    ours = LocalCA(tmp_path / "ours", "example.test", "shopmesh", dt.timedelta(hours=24))
    theirs = LocalCA(tmp_path / "theirs", "example.test", "shopmesh", dt.timedelta(hours=24))
    ours.ensure(["users"])
    theirs.ensure(["users"])
    # Same CA name, same SPIFFE id, valid dates: only the signature tells them apart.
    for kind in ("cert", "key"):
        getattr(ours.files("users"), kind).write_bytes(getattr(theirs.files("users"), kind).read_bytes())
    assert not verifies_against(ours, "users")
    assert ours.ensure(["users"]) == ["users"]
    assert verifies_against(ours, "users")


def test_a_key_that_does_not_match_its_certificate_is_reissued(tmp_path: Path) -> None:
    ca = LocalCA(tmp_path, "example.test", "shopmesh", dt.timedelta(hours=24))
    ca.ensure(["users", "edge"])
    ca.files("users").key.write_bytes(ca.files("edge").key.read_bytes())
    assert ca.ensure(["users", "edge"]) == ["users"]
    assert public_key_of(ca.files("users").key) == public_key_of(ca.files("users").cert)


def test_a_ca_key_that_does_not_match_the_ca_certificate_replaces_the_ca(tmp_path: Path) -> None:
    ca = LocalCA(tmp_path, "example.test", "shopmesh", dt.timedelta(hours=24))
    ca.ensure(["users"])
    (tmp_path / "ca.key").write_bytes(ca.files("users").key.read_bytes())
    assert ca.ensure(["users"]) == ["users"]
    assert public_key_of(tmp_path / "ca.key") == public_key_of(ca.ca_file)
    assert verifies_against(ca, "users")


def public_key_of(path: Path) -> bytes:
    data = path.read_bytes()
    if b"PRIVATE KEY" in data:
        key = serialization.load_pem_private_key(data, password=None)
        public = key.public_key()
    else:
        public = x509.load_pem_x509_certificate(data).public_key()
    return public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def test_keys_are_private_and_certificates_readable(tmp_path: Path) -> None:
    ca = LocalCA(tmp_path, "example.test", "shopmesh", dt.timedelta(hours=24))
    old_umask = os.umask(0o002)  # a permissive umask must not widen key files
    try:
        ca.ensure(["users"])
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE((tmp_path / "ca.key").stat().st_mode) == 0o600
    assert stat.S_IMODE(ca.files("users").key.stat().st_mode) == 0o600
    assert stat.S_IMODE(ca.files("users").cert.stat().st_mode) == 0o644
    assert stat.S_IMODE(ca.ca_file.stat().st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ca.key", "ca.pem", "issued", "users.key", "users.pem"]
    # The marker Envoy reloads on, renamed in once the key and certificate are both in place.
    assert [p.name for p in ca.issued_markers.iterdir()] == ["users"]


def test_writes_never_follow_a_planted_symlink(tmp_path: Path) -> None:
    pki = tmp_path / "pki"
    ca = LocalCA(pki, "example.test", "shopmesh", dt.timedelta(hours=24))
    ca.ensure(["users"])
    outside = tmp_path / "outside"
    outside.write_bytes(b"untouched")
    # A stray temporary name and the certificate itself point elsewhere.
    ca.files("users").cert.unlink()
    ca.files("users").cert.symlink_to(outside)
    for stray in ("users.key.tmp", "users.pem.tmp", "users.key.partial"):
        (pki / stray).symlink_to(outside)
    assert ca.ensure(["users"]) == ["users"]
    assert outside.read_bytes() == b"untouched"
    assert not ca.files("users").cert.is_symlink()
    assert verifies_against(ca, "users")
    assert public_key_of(ca.files("users").key) == public_key_of(ca.files("users").cert)


def test_a_stray_world_readable_temporary_file_does_not_leak_the_key(tmp_path: Path) -> None:
    ca = LocalCA(tmp_path, "example.test", "shopmesh", dt.timedelta(hours=24))
    for stray in ("ca.key.tmp", "users.key.tmp"):
        (tmp_path / stray).write_bytes(b"left over")
        (tmp_path / stray).chmod(0o644)
    ca.ensure(["users"])
    assert stat.S_IMODE((tmp_path / "ca.key").stat().st_mode) == 0o600
    assert stat.S_IMODE(ca.files("users").key.stat().st_mode) == 0o600
