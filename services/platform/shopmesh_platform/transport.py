"""Transport security for servers and channels, chosen by one setting (MESH_TLS).

With MESH_TLS=on (the default) every server requires a client certificate from
the mesh CA and every channel presents this service's own, verifying that the
server's certificate was issued for the service it dials (its DNS SAN). The
caller's identity is the SPIFFE URI SAN of its certificate
(`spiffe://<trust-domain>/ns/<namespace>/sa/<identity>`).

Certificates are renewed while processes run: servers re-read the files for
new connections (gRPC's dynamic server credentials ask before every
handshake), channels are rebuilt on the new files (ReloadingChannel); both
check the files at most once a second (shopmesh_platform.certificates).

With MESH_TLS=sidecar (behind Envoy/Istio sidecars, which do mTLS and enforce the
same policy) the server is plaintext and the caller's identity is the `URI` of
the element of `x-forwarded-client-cert` that the local sidecar appended: the
last one, whose `By` names this workload. Earlier elements may have been written
by the caller itself and are never trusted. This is only safe if every call
reaches the port through that sidecar (Istio's inbound capture, STRICT mTLS) and
the sidecar appends or sets the header (`forward_client_cert_details`
APPEND_FORWARD, Istio's default for sidecar inbound traffic, or SANITIZE_SET).
Envoy then removes a client's header on non-mTLS connections; FORWARD_ONLY or
ALWAYS_FORWARD_ONLY would pass a forged one through as the last element.

With MESH_TLS=off there is no caller identity at all: no header is trusted, and
internal methods refuse every call.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from typing import Any

import grpc
from cryptography import x509
from grpc import aio

from shopmesh_platform.certificates import CertificateFiles, TlsMaterial
from shopmesh_platform.config import PlatformConfig, TransportSecurity
from shopmesh_platform.mesh import MeshDeclaration
from shopmesh_platform.reloading_channel import ReloadingChannel

logger = logging.getLogger("shopmesh.transport")
CLIENT_CERT_HEADER = "x-forwarded-client-cert"
PLAINTEXT_WARNINGS = {
    TransportSecurity.OFF: "MESH_TLS=off: serving plaintext and trusting no caller identity; "
    "internal methods refuse every call",
    TransportSecurity.SIDECAR: "MESH_TLS=sidecar: serving plaintext; caller identities come from the local "
    "sidecar's x-forwarded-client-cert element, which is only safe if every call arrives through that sidecar "
    "and it appends or sets the header (APPEND_FORWARD or SANITIZE_SET)",
}


def bind(server: aio.Server, config: PlatformConfig, address: str) -> int:
    """Bind `server` to `address` with the configured security; returns the port."""
    if config.transport is not TransportSecurity.ON:
        logger.warning(PLAINTEXT_WARNINGS[config.transport])
        port: int = server.add_insecure_port(address)
        return port
    assert config.tls is not None
    fetcher = ServerCertificates(CertificateFiles(config.tls))
    credentials = grpc.dynamic_ssl_server_credentials(fetcher.initial(), fetcher, require_client_authentication=True)
    port = server.add_secure_port(address, credentials)
    return port


class ServerCertificates:
    """gRPC's certificate fetcher for a server: a new configuration when the files changed, else None."""

    def __init__(self, certificates: CertificateFiles) -> None:
        self._certificates = certificates
        self._served = -1

    @staticmethod
    def _configuration(material: TlsMaterial) -> grpc.ServerCertificateConfiguration:
        return grpc.ssl_server_certificate_configuration([(material.key, material.cert)], root_certificates=material.ca)

    def initial(self) -> grpc.ServerCertificateConfiguration:
        material = self._certificates.current()
        self._served = material.generation
        return self._configuration(material)

    def __call__(self) -> grpc.ServerCertificateConfiguration | None:
        # Called by gRPC before every handshake; an exception here would fail the handshake.
        try:
            material = self._certificates.current()
            if material.generation == self._served:
                return None
            self._served = material.generation
            return self._configuration(material)
        except Exception:
            logger.exception("could not load the renewed certificate; keeping the current one")
            return None


def dial(
    config: PlatformConfig, target: str, address: str, options: list[tuple[str, Any]], interceptors: list[Any]
) -> aio.Channel:
    """Open a channel to the mesh service `target` at `address` with the configured security."""
    if config.transport is not TransportSecurity.ON:
        return aio.insecure_channel(address, options=options, interceptors=interceptors)
    assert config.tls is not None

    def secure_channel(material: TlsMaterial) -> aio.Channel:
        credentials = grpc.ssl_channel_credentials(
            root_certificates=material.ca, private_key=material.key, certificate_chain=material.cert
        )
        # The server must present a certificate issued for `target` (its DNS SAN).
        return aio.secure_channel(
            address,
            credentials,
            options=[*options, ("grpc.ssl_target_name_override", target)],
            interceptors=interceptors,
        )

    return ReloadingChannel(CertificateFiles(config.tls), secure_channel)


def identity_from_spiffe(mesh: MeshDeclaration, uri: str) -> str | None:
    """`spiffe://<td>/ns/<ns>/sa/<name>` of this mesh -> name; anything else -> None."""
    prefix = f"spiffe://{mesh.trust_domain}/ns/{mesh.namespace}/sa/"
    if not uri.startswith(prefix):
        return None
    name = uri[len(prefix) :]
    return name if name and "/" not in name else None


@functools.lru_cache(maxsize=256)
# Every call on a connection presents the same certificate: parse each one once, not per call.
@functools.lru_cache(maxsize=256)
def _spiffe_uris(pem: bytes) -> tuple[str, ...]:
    try:
        cert = x509.load_pem_x509_certificate(pem)
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, x509.ExtensionNotFound):
        return ()
    return tuple(
        uri for uri in names.get_values_for_type(x509.UniformResourceIdentifier) if uri.startswith("spiffe://")
    )


@dataclass(frozen=True)
class XfccElement:
    """One proxy's element of an x-forwarded-client-cert header: its pairs, keys lower-cased."""

    pairs: tuple[tuple[str, str], ...]

    def values(self, key: str) -> list[str]:
        """Every value of `key` (case-insensitive), in order; keys such as URI may repeat."""
        wanted = key.lower()
        return [value for name, value in self.pairs if name == wanted]


def parse_xfcc(header: str) -> list[XfccElement]:
    """Split an x-forwarded-client-cert header into its elements, nearest proxy last.

    Envoy's format: elements separated by `,`, `key=value` pairs by `;`, values
    optionally double-quoted (then they may contain `,` `;` `=` and `\\"`).
    Raises ValueError on anything else, so a malformed header names no one.
    """
    elements: list[XfccElement] = []
    pairs: list[tuple[str, str]] = []
    position, end = 0, len(header)
    while True:
        key_end = position
        while key_end < end and header[key_end] not in '=;,"':
            key_end += 1
        key = header[position:key_end].strip().lower()
        if key_end == end or header[key_end] != "=" or not key:
            raise ValueError(f"x-forwarded-client-cert: expected key=value at offset {position}")
        value, position = _xfcc_value(header, key_end + 1)
        pairs.append((key, value))
        while position < end and header[position] in " \t":
            position += 1
        if position == end:
            elements.append(XfccElement(tuple(pairs)))
            return elements
        if header[position] == ",":
            elements.append(XfccElement(tuple(pairs)))
            pairs = []
        elif header[position] != ";":
            raise ValueError(f"x-forwarded-client-cert: unexpected {header[position]!r} at offset {position}")
        position += 1


def _xfcc_value(header: str, position: int) -> tuple[str, int]:
    """The value starting at `position` and the offset just after it."""
    end = len(header)
    if position < end and header[position] == '"':
        chars: list[str] = []
        position += 1
        while position < end:
            char = header[position]
            if char == "\\" and position + 1 < end:
                chars.append(header[position + 1])
                position += 2
            elif char == '"':
                return "".join(chars), position + 1
            else:
                chars.append(char)
                position += 1
        raise ValueError("x-forwarded-client-cert: unterminated quoted value")
    value_end = position
    while value_end < end and header[value_end] not in ";,":
        value_end += 1
    value = header[position:value_end].strip()
    if '"' in value:
        raise ValueError("x-forwarded-client-cert: stray quote in an unquoted value")
    return value, value_end


def sidecar_identity(mesh: MeshDeclaration, own_identity: str, header: str) -> str | None:
    """The caller named by the element the local sidecar appended, or None.

    Only the last element counts (Envoy appends the nearest hop's element), and
    only if its `By` is this workload's own SPIFFE id and it names exactly one
    identity of this mesh; everything before it may have been written by the caller.
    """
    try:
        nearest = parse_xfcc(header)[-1]
    except ValueError:
        logger.warning("x-forwarded-client-cert is malformed; the caller has no identity")
        return None
    own_uri = f"spiffe://{mesh.trust_domain}/ns/{mesh.namespace}/sa/{own_identity}"
    # `By` is no secret (anyone can write it): this catches a header appended by some
    # other proxy or none, while the guarantee itself is that every call passes the sidecar.
    if own_uri not in nearest.values("by"):
        logger.warning("x-forwarded-client-cert was not appended by this workload's sidecar; ignored")
        return None
    identities = {identity_from_spiffe(mesh, uri) for uri in nearest.values("uri")}
    if len(identities) != 1 or None in identities:
        return None
    return identities.pop()


def peer_identity_resolver(config: PlatformConfig) -> Any:
    """A function context -> caller identity (None if it has none), for the auth interceptor."""
    mesh = config.mesh

    def from_certificate(context: aio.ServicerContext[Any, Any]) -> str | None:
        certificates = (context.auth_context() or {}).get("x509_pem_cert") or []
        for pem in certificates:
            for uri in _spiffe_uris(bytes(pem)):
                identity = identity_from_spiffe(mesh, uri)
                if identity is not None:
                    return identity
        return None

    def from_sidecar_header(context: aio.ServicerContext[Any, Any]) -> str | None:
        headers = [item.value for item in context.invocation_metadata() or () if item.key == CLIENT_CERT_HEADER]
        if len(headers) != 1:
            # None, or several (which no sidecar sends): nothing to vouch for the caller.
            return None
        value = headers[0]
        return sidecar_identity(mesh, config.service_name, value.decode() if isinstance(value, bytes) else value)

    resolvers: dict[TransportSecurity, Any] = {
        TransportSecurity.ON: from_certificate,
        TransportSecurity.SIDECAR: from_sidecar_header,
        TransportSecurity.OFF: no_identity,
    }
    return resolvers[config.transport]


def no_identity(context: aio.ServicerContext[Any, Any]) -> str | None:
    """MESH_TLS=off: no caller carries an identity, whatever headers it sends."""
    return None
