"""Where a service gets the keys that verify user tokens: the issuer named in mesh.yaml.

`IssuerJwks` calls the issuer's `auth.jwks_method` (a public unary method) with
a generic call whose request and response types are looked up by their full
names in the issuer's generated code (shopmesh_platform.protos): the platform
never imports the issuer's stubs. The answer, as a JSON-shaped mapping with
proto field names, is a JWKS plus the issuer's `token_lifetime_seconds`.

`PublishedKeys` is how the issuer itself hands the platform its own key set
(it verifies its tokens without calling itself).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from google.protobuf import json_format
from google.protobuf.message import Message
from grpc import aio

from shopmesh_platform.mesh import AuthDecl, MeshDeclaration
from shopmesh_platform.protos import message_class, method_descriptor


class PublishedKeys(Protocol):
    """An issuer's own key set, as the JWKS it publishes."""

    def jwks(self) -> Mapping[str, Any]: ...


class IssuerJwks:
    """Fetches the JWKS from the issuing service over gRPC; a `JwksSource` (call it)."""

    def __init__(self, channel: aio.Channel, mesh: MeshDeclaration, auth: AuthDecl) -> None:
        method = auth.jwks_method
        issuer = mesh.service(auth.issuer)
        descriptor = method_descriptor(issuer.full_name, method.name)
        request_class = message_class(descriptor.input_type.full_name)
        response_class = message_class(descriptor.output_type.full_name)
        self._request = request_class()
        self._call = channel.unary_unary(
            method.path,
            request_serializer=request_class.SerializeToString,
            response_deserializer=response_class.FromString,
        )

    async def __call__(self) -> Mapping[str, Any]:
        reply: Message = await self._call(self._request)
        return json_format.MessageToDict(reply, preserving_proto_field_name=True)


class OwnKeys:
    """The issuer's own keys as a `JwksSource`."""

    def __init__(self, keys: PublishedKeys) -> None:
        self._keys = keys

    async def __call__(self) -> Mapping[str, Any]:
        return self._keys.jwks()
