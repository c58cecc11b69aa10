"""The stack's local certificate authority and one certificate per mesh identity.

At stack start a CA (EC P-256, key kept in the data directory only) issues a
certificate per identity with a SPIFFE URI SAN
`spiffe://<trust-domain>/ns/<namespace>/sa/<identity>` (the names Istio uses as
principals), plus a DNS SAN of the identity's name (what clients verify as the
server name) and 127.0.0.1. Identities: the five services, `edge` (Envoy) and
`developer` (grpcurl, tests, the stack's own probes). Certificates live 24 hours
by default; one that is missing, expired, expiring within an hour, or not
issued by the current CA for the current trust domain is reissued on `up`.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_LIFETIME = dt.timedelta(days=365)
RENEW_BEFORE = dt.timedelta(hours=1)


def spiffe_id(trust_domain: str, namespace: str, identity: str) -> str:
    return f"spiffe://{trust_domain}/ns/{namespace}/sa/{identity}"


@dataclass(frozen=True)
class IdentityFiles:
    """Where one identity's certificate, key and the CA bundle are."""

    cert: Path
    key: Path
    ca: Path


def _write_private(path: Path, data: bytes) -> None:
    temporary = path.with_suffix(path.suffix + ".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)
    temporary.replace(path)


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
        except (OSError, ValueError):
            return None
        if not isinstance(key, ec.EllipticCurvePrivateKey) or cert.not_valid_after_utc - RENEW_BEFORE < self._now():
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
        self.ca_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return cert, key

    def _current(self, identity: str, ca_cert: x509.Certificate) -> bool:
        files = self.files(identity)
        try:
            cert = x509.load_pem_x509_certificate(files.cert.read_bytes())
        except (OSError, ValueError):
            return False
        if not files.key.exists() or cert.issuer != ca_cert.subject:
            return False
        if cert.not_valid_after_utc - RENEW_BEFORE < self._now():
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
        _write_private(files.key, _pem_key(key))
        files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))

    def ensure(self, identities: Iterable[str]) -> list[str]:
        """Create the CA if needed and (re)issue what is not current; returns identities issued."""
        loaded = self._load_ca()
        ca_cert, ca_key = loaded if loaded is not None else self._create_ca()
        issued = []
        for identity in identities:
            if loaded is None or not self._current(identity, ca_cert):
                self._issue(identity, ca_cert, ca_key)
                issued.append(identity)
        return issued
