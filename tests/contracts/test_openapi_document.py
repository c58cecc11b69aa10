"""The OpenAPI finishing step: access classes from mesh/mesh.yaml, internal methods dropped, nothing guessed."""

from __future__ import annotations

import json
from typing import Any

import pytest

from shopmesh_edge.render import server_streaming_paths
from shopmesh_gen import openapi
from shopmesh_platform.mesh import AccessClass, load_mesh
from shopmesh_stack.settings import REPO


def operation(operation_id: str) -> dict[str, Any]:
    return {"operationId": operation_id, "responses": {"200": {"description": "OK"}}}


def raw_document(**paths: dict[str, Any]) -> dict[str, Any]:
    return {"openapi": "3.0.3", "info": {"title": "t", "version": "v1"}, "paths": paths}


def test_user_methods_need_the_bearer_and_public_ones_nothing() -> None:
    document = openapi.finish(
        raw_document(
            me={"get": operation("UserService_GetMe")},
            login={"post": operation("UserService_Login")},
            suspend={"post": operation("UserService_SuspendUser")},
        ),
        load_mesh(),
    )
    assert document["paths"]["me"]["get"]["security"] == [{"bearerAuth": []}]
    assert "401" in document["paths"]["me"]["get"]["responses"]
    assert document["paths"]["login"]["post"]["security"] == []
    assert document["paths"]["suspend"]["post"]["x-shopmesh-roles"] == ["admin"]
    assert document["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"


def test_internal_methods_are_dropped() -> None:
    document = openapi.finish(
        raw_document(
            reserve={"post": operation("InventoryService_ReserveStock")},
            list={"get": operation("InventoryService_ListProducts")},
        ),
        load_mesh(),
    )
    assert list(document["paths"]) == ["list"]


def test_an_undeclared_operation_stops_generation() -> None:
    with pytest.raises(openapi.OpenApiError, match="UserService_Teleport"):
        openapi.finish(raw_document(x={"get": operation("UserService_Teleport")}), load_mesh())


def test_committed_document_matches_the_mesh_declaration() -> None:
    document = json.loads((REPO / "gen" / "openapi" / "openapi.json").read_text())
    mesh = load_mesh()
    documented = {
        op["x-shopmesh-grpc-method"]: op
        for item in document["paths"].values()
        for op in item.values()
        if "operationId" in op
    }
    streams = server_streaming_paths()
    routed = {m.path: m for m in mesh.all_methods() if m.access is not AccessClass.INTERNAL and m.path not in streams}
    # Every non-internal unary method has an HTTP rule, so each is documented; no internal one is,
    # nor a server stream (gRPC only: WatchNotifications).
    assert "/shopmesh.notification.v1.NotificationService/WatchNotifications" in streams
    assert set(documented) == set(routed)
    for path, op in documented.items():
        assert (op["security"] == [{"bearerAuth": []}]) == (routed[path].access is AccessClass.USER)
