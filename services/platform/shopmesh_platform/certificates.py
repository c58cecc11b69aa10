"""This service's certificate, key and CA as they are on disk now.

Certificates are short-lived and renewed while the stack runs (the stack's
renewer replaces the files by rename). `CertificateFiles.current()` answers with
what the files hold, re-reading them only when one changed (its inode, size or
modification time) and at most once per `recheck_seconds`, so it is cheap
enough to ask on every connection or call. A new set is taken only if it is
whole and consistent: every PEM parses and the key belongs to the certificate;
otherwise (a read between the key's and the certificate's rename, a deleted
file) the last good set stays in use and the files are tried again later.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from shopmesh_platform.config import TlsFiles

logger = logging.getLogger("shopmesh.certificates")
FileSignature = tuple[tuple[int, int, int, int], ...]


@dataclass(frozen=True)
class TlsMaterial:
    """One consistent set of PEM bytes; `generation` grows by one with every set taken."""

    cert: bytes
    key: bytes
    ca: bytes
    generation: int


class CertificateUnusable(ValueError):
    """The files do not form a usable set (yet)."""


def check_material(cert: bytes, key: bytes, ca: bytes) -> None:
    """Raise CertificateUnusable unless the PEMs parse and the key is the certificate's."""
    try:
        certificate = x509.load_pem_x509_certificate(cert)
        private_key = serialization.load_pem_private_key(key, password=None)
        x509.load_pem_x509_certificates(ca)
    except (ValueError, TypeError) as exc:
        raise CertificateUnusable(f"unreadable PEM: {exc}") from None
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    if private_key.public_key().public_bytes(der, spki) != certificate.public_key().public_bytes(der, spki):
        raise CertificateUnusable("the key does not belong to the certificate")


class CertificateFiles:
    """Watches one identity's files; see the module docstring. Safe to call from any thread."""

    def __init__(
        self,
        files: TlsFiles,
        *,
        recheck_seconds: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._paths = (files.cert_file, files.key_file, files.ca_file)
        self._recheck_seconds = recheck_seconds
        self._clock = clock
        self._lock = threading.Lock()
        # What the process validated at start, until the files are read here.
        self._material = TlsMaterial(files.cert, files.key, files.ca, generation=0)
        self._signature: FileSignature | None = None
        self._refused: FileSignature | None = None
        self._refusing = False
        self._checked_at = float("-inf")
        with self._lock:
            self._reload()

    def current(self) -> TlsMaterial:
        """The newest consistent set (re-reading the files only if they changed)."""
        with self._lock:
            now = self._clock()
            if now - self._checked_at >= self._recheck_seconds:
                self._checked_at = now
                if self._reload():
                    logger.info("using a renewed certificate", extra={"serial": f"{_serial(self._material.cert):x}"})
            return self._material

    def _stat(self) -> FileSignature | None:
        try:
            stats = [os.stat(path) for path in self._paths]
        except OSError:
            return None
        return tuple((s.st_dev, s.st_ino, s.st_size, s.st_mtime_ns) for s in stats)

    def _reload(self) -> bool:
        """Take the files' set if they changed and are usable; True if the material changed."""
        before = self._stat()
        if before is not None and before in (self._signature, self._refused):
            return False
        try:
            if before is None:
                raise CertificateUnusable("a certificate file is missing")
            cert, key, ca = (Path(path).read_bytes() for path in self._paths)
            if self._stat() != before:
                return False  # changed while being read: read again next time
            check_material(cert, key, ca)
        except (OSError, CertificateUnusable) as exc:
            if not self._refusing or before != self._refused:
                logger.warning(
                    "keeping the current certificate: %s", exc, extra={"files": [str(p) for p in self._paths]}
                )
            self._refused, self._refusing = before, True
            return False
        self._signature, self._refused, self._refusing = before, None, False
        if (cert, key, ca) == (self._material.cert, self._material.key, self._material.ca):
            return False
        self._material = TlsMaterial(cert, key, ca, self._material.generation + 1)
        return True


def _serial(cert: bytes) -> int:
    return x509.load_pem_x509_certificate(cert).serial_number
