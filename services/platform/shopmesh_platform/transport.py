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

With MESH_TLS=off (behind Istio sidecars, which do mTLS and enforce the same
policy) the identity is read from the `x-forwarded-client-cert` header the
sidecar sets; without a sidecar there is none, and internal methods refuse.
"""

from __future__ import annotations

import functools
import logging
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


def bind(server: aio.Server, config: PlatformConfig, address: str) -> int:
    """Bind `server` to `address` with the configured security; returns the port."""
    if config.transport is TransportSecurity.OFF:
        logger.warning("MESH_TLS=off: serving plaintext; only safe behind a sidecar that does mTLS")
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
    if config.transport is TransportSecurity.OFF:
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
def _spiffe_uris(pem: bytes) -> tuple[str, ...]:
    try:
        cert = x509.load_pem_x509_certificate(pem)
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, x509.ExtensionNotFound):
        return ()
    return tuple(
        uri for uri in names.get_values_for_type(x509.UniformResourceIdentifier) if uri.startswith("spiffe://")
    )


def _xfcc_uri(header: str) -> str | None:
    """The URI= element of the first (nearest) entry of an x-forwarded-client-cert header."""
    first = header.split(",", maxsplit=1)[0]
    for part in first.split(";"):
        key, _, value = part.partition("=")
        if key.strip().lower() == "uri":
            return value.strip().strip('"')
    return None


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
        for item in context.invocation_metadata() or ():
            if item.key == CLIENT_CERT_HEADER:
                uri = _xfcc_uri(str(item.value))
                return identity_from_spiffe(mesh, uri) if uri else None
        return None

    return from_sidecar_header if config.transport is TransportSecurity.OFF else from_certificate
