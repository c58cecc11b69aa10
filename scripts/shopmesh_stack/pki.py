"""The stack's local certificate authority and one certificate per mesh identity.

At stack start a CA (EC P-256, key kept in the data directory only) issues a
certificate per identity with a SPIFFE URI SAN
`spiffe://<trust-domain>/ns/<namespace>/sa/<identity>` (the names Istio uses as
principals), plus a DNS SAN of the identity's name (what clients verify as the
server name) and 127.0.0.1. Identities: the five services, `edge` (Envoy) and
`developer` (grpcurl, tests, the stack's own probes). Certificates live 24 hours
by default; one that is missing, expired, expiring within an hour, not
signed by the current CA's key, not matching its own key file, or not for the
current trust domain is reissued on `up`. Keys and certificates are written
atomically (see `_write_atomically`): a key file is never readable by others,
not even for a moment, and never half-written.

While the stack runs, its renewer (shopmesh_stack.renewer) calls `renew`, which
reissues a certificate once two thirds of its lifetime have passed. The key is
replaced before the certificate; a reader between the two renames sees a key
that does not match the certificate, and keeps what it had (see
shopmesh_platform.certificates). Once both are in place a marker is renamed into
`issued/`: Envoy reloads on that (its SDS `watched_directory`), never on half a
renewal.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import ipaddress
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_LIFETIME = dt.timedelta(days=365)
RENEW_BEFORE = dt.timedelta(hours=1)
# The running stack renews a certificate once this share of its lifetime has passed.
RENEW_AT_FRACTION = 2 / 3
# Subdirectory of the CA directory into which a marker is renamed after every completed issue.
ISSUED_MARKERS = "issued"


def spiffe_id(trust_domain: str, namespace: str, identity: str) -> str:
    return f"spiffe://{trust_domain}/ns/{namespace}/sa/{identity}"


@dataclass(frozen=True)
class IdentityFiles:
    """Where one identity's certificate, key and the CA bundle are."""

    cert: Path
    key: Path
    ca: Path


PRIVATE_MODE = 0o600
PUBLIC_MODE = 0o644
# What loading or checking a file another run (or someone else) left behind may raise.
UNUSABLE = (OSError, ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm)


def _write_atomically(path: Path, data: bytes, mode: int) -> None:
    """Replace `path` with `data`: readers see the old file or the whole new one.

    The temporary file gets a fresh random name in the same directory and is
    created exclusively (O_EXCL, so a planted file or symlink is never followed
    or reused) with mode 0600 from the first byte; it is fsynced, given its final
    mode, renamed over `path` (which replaces a symlink there rather than writing
    through it), and the directory is fsynced so the rename survives a crash.
    """
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
            os.fchmod(handle.fileno(), mode)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def _write_private(path: Path, data: bytes) -> None:
    _write_atomically(path, data, PRIVATE_MODE)


def _write_public(path: Path, data: bytes) -> None:
    _write_atomically(path, data, PUBLIC_MODE)


def _public_der(holder: x509.Certificate | PrivateKeyTypes) -> bytes:
    """The public key of a certificate or of a private key, comparable across both."""
    public = holder.public_key()
    return public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


class LocalCA:
    """A CA in `directory` (ca.pem, ca.key) and the identity certificates it issued."""

    def __init__(self, directory: Path, trust_domain: str, namespace: str, lifetime: dt.timedelta) -> None:
        self.directory = directory
        self.trust_domain = trust_domain
        self.namespace = namespace
        self.lifetime = lifetime

    @property
    def ca_file(self) -> Path:
        return self.directory / "ca.pem"

    def files(self, identity: str) -> IdentityFiles:
        return IdentityFiles(self.directory / f"{identity}.pem", self.directory / f"{identity}.key", self.ca_file)

    def _now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)

    def _load_ca(self) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None:
        try:
            cert = x509.load_pem_x509_certificate(self.ca_file.read_bytes())
            key = serialization.load_pem_private_key((self.directory / "ca.key").read_bytes(), password=None)
            cert.verify_directly_issued_by(cert)  # self-signed by the key in its certificate
        except UNUSABLE:
            return None
        if not isinstance(key, ec.EllipticCurvePrivateKey) or cert.not_valid_after_utc - RENEW_BEFORE < self._now():
            return None
        if _public_der(key) != _public_der(cert):
            # A CA key that did not make this certificate would issue certificates nobody trusts.
            return None
        return cert, key

    def _create_ca(self) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"shopmesh local CA ({self.trust_domain})")])
        now = self._now()
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + CA_LIFETIME)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        self.directory.mkdir(parents=True, exist_ok=True)
        _write_private(self.directory / "ca.key", _pem_key(key))
        _write_public(self.ca_file, cert.public_bytes(serialization.Encoding.PEM))
        return cert, key

    def _current(self, identity: str, ca_cert: x509.Certificate, renew_before: dt.timedelta = RENEW_BEFORE) -> bool:
        files = self.files(identity)
        try:
            cert = x509.load_pem_x509_certificate(files.cert.read_bytes())
            key = serialization.load_pem_private_key(files.key.read_bytes(), password=None)
            # The issuer's name is not enough: another CA may carry the same one.
            cert.verify_directly_issued_by(ca_cert)
        except UNUSABLE:
            return False
        if _public_der(key) != _public_der(cert):
            return False
        if cert.not_valid_after_utc - renew_before < self._now():
            return False
        try:
            uris = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
                x509.UniformResourceIdentifier
            )
        except x509.ExtensionNotFound:
            return False
        return uris == [spiffe_id(self.trust_domain, self.namespace, identity)]

    def _issue(self, identity: str, ca_cert: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        now = self._now()
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, identity)]))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + self.lifetime)
            .add_extension(
                x509.SubjectAlternativeName(
                    [
                        x509.UniformResourceIdentifier(spiffe_id(self.trust_domain, self.namespace, identity)),
                        x509.DNSName(identity),
                        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    ]
                ),
                critical=False,
            )
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                critical=False,
            )
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        files = self.files(identity)
        # A crash between the two writes leaves a key that does not match the
        # certificate, which `_current` detects: the next run reissues both.
        _write_private(files.key, _pem_key(key))
        _write_public(files.cert, cert.public_bytes(serialization.Encoding.PEM))
        self._mark_issued(identity)

    @property
    def issued_markers(self) -> Path:
        """Where a file is renamed in once an identity's new key and certificate are both in place."""
        return self.directory / ISSUED_MARKERS

    def _mark_issued(self, identity: str) -> None:
        self.issued_markers.mkdir(exist_ok=True)
        _write_public(self.issued_markers / identity, b"")

    def ensure(self, identities: Iterable[str], *, renew_before: dt.timedelta = RENEW_BEFORE) -> list[str]:
        """Create the CA if needed and (re)issue what is not current; returns identities issued."""
        loaded = self._load_ca()
        ca_cert, ca_key = loaded if loaded is not None else self._create_ca()
        self.issued_markers.mkdir(exist_ok=True)
        issued = []
        for identity in identities:
            if loaded is None or not self._current(identity, ca_cert, renew_before):
                self._issue(identity, ca_cert, ca_key)
                issued.append(identity)
        return issued

    @contextlib.contextmanager
    def issuing(self) -> Iterator[None]:
        """Hold the directory's issuing lock: `make up` and the renewer never write the same files at once."""
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.directory / ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def renew(self, identities: Iterable[str]) -> list[str]:
        """What the running stack calls: reissue what has used two thirds of its lifetime, or is not current."""
        with self.issuing():
            return self.ensure(identities, renew_before=self.lifetime * (1 - RENEW_AT_FRACTION))
