"""What a TLS server presents: one handshake with a mesh identity's current files."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

from cryptography import x509


def served_certificate(port: int, server_name: str, cert: Path, key: Path, ca: Path) -> x509.Certificate:
    """The certificate the server on 127.0.0.1:`port` presents, verified against `ca` for `server_name`."""
    context = ssl.create_default_context(cafile=str(ca))
    context.load_cert_chain(str(cert), str(key))
    context.set_alpn_protocols(["h2"])
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=server_name) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)
