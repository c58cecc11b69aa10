"""Finish protoc-gen-openapi's document so it describes what the edge really serves.

protoc-gen-openapi knows the protos and their `google.api.http` rules (camelCase
JSON names, enum names, google.rpc.Status error bodies come from there); the access
classes live in mesh/mesh.yaml, which it cannot read. From the mesh declaration this
adds the bearer scheme to `user` operations (with their roles), marks `public` ones
as needing nothing, and drops `internal` methods (the edge has no route for them).
An operation that names no declared method stops generation: nothing is guessed.
"""

from __future__ import annotations

import copy
from typing import Any

from shopmesh_platform.mesh import AccessClass, MeshDeclaration, MethodDecl

BEARER_SCHEME = "bearerAuth"
HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
DESCRIPTION = (
    "The REST/JSON surface of the shopmesh edge (Envoy's gRPC-JSON transcoder), generated from the "
    "Protobuf contracts and mesh/mesh.yaml by `make gen`. The same methods are served over gRPC on "
    "the same listener. Errors are google.rpc.Status JSON with ErrorInfo and BadRequest details."
)
UNAUTHENTICATED = {
    "description": "Missing, invalid, expired or revoked bearer token.",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Status"}}},
}


class OpenApiError(ValueError):
    """The generated document and the mesh declaration disagree."""


def _declared(mesh: MeshDeclaration, operation_id: str) -> MethodDecl:
    # protoc-gen-openapi names operations <Service>_<Method>.
    service_name, _, method_name = operation_id.partition("_")
    for service in mesh.services.values():
        if service.service == service_name and method_name in service.methods:
            return service.methods[method_name]
    raise OpenApiError(f"openapi: operation {operation_id} is not a method of mesh/mesh.yaml")


def _finish_operation(operation: dict[str, Any], method: MethodDecl) -> None:
    operation["x-shopmesh-grpc-method"] = method.path
    operation["x-shopmesh-access"] = method.access.value
    if method.access is AccessClass.USER:
        operation["security"] = [{BEARER_SCHEME: []}]
        operation["responses"]["401"] = copy.deepcopy(UNAUTHENTICATED)
        if method.roles:
            roles = sorted(method.roles)
            operation["x-shopmesh-roles"] = roles
            note = f"Requires the role {', '.join(roles)}."
            operation["description"] = f"{operation.get('description', '').rstrip()}\n\n{note}".strip()
    else:
        operation["security"] = []


def finish(document: dict[str, Any], mesh: MeshDeclaration) -> dict[str, Any]:
    """A new document: access classes applied, internal methods removed."""
    result = copy.deepcopy(document)
    result["info"]["description"] = DESCRIPTION
    paths: dict[str, Any] = {}
    for path, item in result.get("paths", {}).items():
        kept = {}
        for key, operation in item.items():
            if key not in HTTP_METHODS:
                kept[key] = operation
                continue
            method = _declared(mesh, operation["operationId"])
            if method.access is AccessClass.INTERNAL:
                continue
            _finish_operation(operation, method)
            kept[key] = operation
        if any(key in HTTP_METHODS for key in kept):
            paths[path] = kept
    result["paths"] = paths
    schemes = result.setdefault("components", {}).setdefault("securitySchemes", {})
    schemes[BEARER_SCHEME] = {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "A user token (JWT) from the token issuer's login or registration.",
    }
    return result
