"""The mesh declaration loads, answers access-class queries, and rejects mistakes."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from shopmesh_platform.mesh import (
    AccessClass,
    LoadBalancer,
    MeshDeclarationError,
    StorageKind,
    load_mesh,
    parse_mesh,
)


def test_access_classes_are_queried_by_method_path() -> None:
    mesh = load_mesh()
    login = mesh.method("/shopmesh.user.v1.UserService/Login")
    get_user = mesh.method("/shopmesh.user.v1.UserService/GetUser")
    assert login is not None and login.access is AccessClass.PUBLIC
    assert get_user is not None and get_user.access is AccessClass.USER
    reserve = mesh.method("/shopmesh.inventory.v1.InventoryService/ReserveStock")
    assert reserve is not None
    assert reserve.access is AccessClass.INTERNAL
    assert reserve.callers == {"orders"}
    assert reserve.idempotent
    suspend = mesh.method("/shopmesh.user.v1.UserService/SuspendUser")
    assert suspend is not None and suspend.roles == {"admin"}
    assert mesh.method("/shopmesh.user.v1.UserService/DropTables") is None


def test_services_have_their_ports() -> None:
    mesh = load_mesh()
    ports = {name: (s.grpc_port, s.metrics_port) for name, s in mesh.services.items()}
    assert ports == {
        "users": (50051, 51051),
        "orders": (50052, 51052),
        "payments": (50053, 51053),
        "inventory": (50054, 51054),
        "notifications": (50055, 51055),
    }


def test_timeouts_default_and_override() -> None:
    mesh = load_mesh()
    assert mesh.method("/shopmesh.user.v1.UserService/Login").timeout_seconds == 5.0  # type: ignore[union-attr]
    assert mesh.method("/shopmesh.payment.v1.PaymentService/CreatePayment").timeout_seconds == 20.0  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda d: d["services"]["inventory"]["methods"]["ReserveStock"].pop("callers"),
            "services.inventory.methods.ReserveStock: an internal method must name its callers",
        ),
        (
            lambda d: d["services"]["orders"]["methods"]["GetOrder"].update(callers=["billing"]),
            r"services.orders.methods.GetOrder.callers: unknown identities \['billing'\]",
        ),
        (lambda d: d["services"]["users"].update(grpc_port=99999), "services.users.grpc_port: must be a port number"),
        (
            lambda d: d["services"]["users"]["methods"]["Login"].update(retries=3),
            r"services.users.methods.Login: unknown keys \['retries'\]",
        ),
        (lambda d: d["services"]["users"].pop("package"), "services.users: missing 'package'"),
        # Roles narrow `user` methods only: anywhere else they would be silently ignored.
        (
            lambda d: d["services"]["users"]["methods"]["Login"].update(roles=["admin"]),
            "services.users.methods.Login.roles: only 'user' methods take roles, this one is public",
        ),
        (
            lambda d: d["services"]["inventory"]["methods"]["ReserveStock"].update(roles=["admin"]),
            "services.inventory.methods.ReserveStock.roles: only 'user' methods take roles, this one is internal",
        ),
        # A service caller acts without a user, so it has no role: the two cannot be combined.
        (
            lambda d: d["services"]["orders"]["methods"]["UpdateOrderStatus"].update(callers=["payments"]),
            "services.orders.methods.UpdateOrderStatus: a role-restricted method cannot name service callers",
        ),
        (
            lambda d: d["services"]["users"]["methods"]["SuspendUser"].update(roles="admin"),
            "services.users.methods.SuspendUser.roles: must be a non-empty list of names",
        ),
        (
            lambda d: d["services"]["users"]["methods"]["SuspendUser"].update(roles=[]),
            "services.users.methods.SuspendUser.roles: must be a non-empty list of names",
        ),
        (
            lambda d: d["services"]["users"]["methods"]["SuspendUser"].update(roles=["admn"]),
            r"services.users.methods.SuspendUser.roles: unknown roles \['admn'\] \(known: admin, customer\)",
        ),
        (
            lambda d: d["services"]["inventory"]["methods"]["ReserveStock"].update(callers="orders"),
            "services.inventory.methods.ReserveStock.callers: must be a non-empty list of names",
        ),
        (
            lambda d: d["services"]["inventory"]["methods"]["ReserveStock"].update(callers=[{"name": "orders"}]),
            "services.inventory.methods.ReserveStock.callers: must be a non-empty list of names",
        ),
        (
            lambda d: d["services"]["inventory"]["methods"]["ReserveStock"].update(callers=["orders", "orders"]),
            r"services.inventory.methods.ReserveStock.callers: duplicates \['orders'\]",
        ),
        (
            lambda d: d["services"]["inventory"]["methods"]["ReserveStock"].update(callers=[]),
            "services.inventory.methods.ReserveStock.callers: must be a non-empty list of names",
        ),
        (
            lambda d: d["services"]["users"]["methods"]["GetMe"].update(idempotent="no"),
            "services.users.methods.GetMe.idempotent: must be true or false",
        ),
        (
            lambda d: d["services"]["users"]["methods"]["GetMe"].update(timeout=True),
            "services.users.methods.GetMe.timeout: must be a positive number of seconds",
        ),
        (
            lambda d: d["services"]["users"]["methods"]["GetMe"].update(access=["user"]),
            r"services.users.methods.GetMe.access: \['user'\] is not one of public, user, internal",
        ),
        (
            lambda d: d["services"]["orders"].update(grpc_port=50051),
            "services.orders.grpc_port: port 50051 is already used by services.users.grpc_port",
        ),
        (
            lambda d: d["services"]["orders"].update(metrics_port=50051),
            "services.orders.metrics_port: port 50051 is already used by services.users.grpc_port",
        ),
        (
            lambda d: d["services"]["users"].update(tls=False),
            r"services.users: unknown keys \['tls'\]",
        ),
        (
            lambda d: d["services"]["users"].update(methods={}),
            "services.users.methods: must be a non-empty mapping of method names",
        ),
        (
            lambda d: d["services"]["users"].update(package=7),
            "services.users.package: must be a non-empty string",
        ),
        (
            lambda d: d["services"].update(
                billing=copy.deepcopy(d["services"]["users"]) | {"grpc_port": 1, "metrics_port": 2}
            ),
            "services.billing: shopmesh.user.v1.UserService is already declared by services.users",
        ),
        (
            lambda d: d["services"].update({"Bad Name": {}}),
            "services.'Bad Name': a service name must be lower-case letters, digits and '-'",
        ),
        (
            lambda d: d["services"]["users"]["methods"].update({"get-me": {"access": "user"}}),
            "services.users.methods.'get-me': a method name must be a protobuf identifier",
        ),
        (
            lambda d: d["services"]["users"].update(publishes=["user-evnts"]),
            r"services.users.publishes: unknown topics \['user-evnts'\] \(kafka/topics.yaml declares: ",
        ),
        (
            lambda d: d["services"]["orders"].update(consumes=["payment-events.dlq"]),
            r"services.orders.consumes: unknown topics \['payment-events.dlq'\]",
        ),
        (
            lambda d: d["services"]["orders"].update(publishes=["order-events", "payment-events"]),
            "services.payments.publishes: payment-events is already published by orders",
        ),
        (
            lambda d: d["services"]["users"].update(consumes="user-events"),
            "services.users.consumes: must be a non-empty list of names",
        ),
        (
            lambda d: d["services"]["users"].update(storage={"kind": "mysql", "database": "users"}),
            "services.users.storage.kind: 'mysql' is not one of postgres, mongo",
        ),
        (
            lambda d: d["services"]["users"].update(storage={"kind": "postgres"}),
            "services.users.storage: missing 'database'",
        ),
        (
            lambda d: d["services"]["users"].update(storage={"kind": "postgres", "database": "Users; drop"}),
            "services.users.storage.database: must be a database name",
        ),
        (
            lambda d: d["services"]["users"].update(storage={"kind": "postgres", "database": "u", "host": "x"}),
            r"services.users.storage: unknown keys \['host'\]",
        ),
        (
            lambda d: d["services"]["users"].update(storage="postgres"),
            "services.users.storage: must be a mapping with 'kind' and 'database'",
        ),
        (
            lambda d: d["services"]["users"].update(load_balancer="fastest"),
            "services.users.load_balancer: 'fastest' is not one of round_robin, least_request, random",
        ),
        (lambda d: d.update(retries=3), r"mesh: unknown keys \['retries'\]"),
        (lambda d: d.update(version=2), "mesh.version: only version 1 is understood, got 2"),
        (lambda d: d.update(front_door="edge"), "mesh.front_door: must be a non-empty list of names"),
        (lambda d: d.update(front_door=["edge", "users"]), r"mesh.front_door: \['users'\] is also a service"),
        (lambda d: d.update(defaults={"timeout": -1}), "mesh.defaults.timeout: must be a positive number of seconds"),
        (lambda d: d.update(defaults={"retries": 1}), r"mesh.defaults: unknown keys \['retries'\]"),
        (lambda d: d.update(trust_domain=""), "mesh.trust_domain: must be a non-empty string"),
        (lambda d: d.update(services=[]), "mesh.services: must be a non-empty mapping of service names"),
    ],
)
def test_mistakes_are_named(mesh_document: dict[str, Any], mutate: Any, message: str) -> None:
    document = copy.deepcopy(mesh_document)
    mutate(document)
    with pytest.raises(MeshDeclarationError, match=message):
        parse_mesh(document)


def test_every_internal_method_names_at_least_one_caller() -> None:
    internal = [m for m in load_mesh().all_methods() if m.access is AccessClass.INTERNAL]
    assert internal, "the declaration has internal methods"
    assert all(m.callers for m in internal), [m.path for m in internal if not m.callers]


def test_front_door_and_identities() -> None:
    mesh = load_mesh()
    assert mesh.front_door == {"edge", "developer"}
    assert mesh.identities == ["users", "orders", "payments", "inventory", "notifications", "developer", "edge"]


def test_services_declare_storage_topics_and_balancing() -> None:
    mesh = load_mesh()
    storage = {name: (s.storage.kind, s.storage.database) for name, s in mesh.services.items() if s.storage}
    assert storage == {
        "users": (StorageKind.POSTGRES, "users"),
        "orders": (StorageKind.MONGO, "orders"),
        "payments": (StorageKind.POSTGRES, "payments"),
        "inventory": (StorageKind.POSTGRES, "inventory"),
        "notifications": (StorageKind.POSTGRES, "notifications"),
    }
    publishers = {topic: name for name, s in mesh.services.items() for topic in s.publishes}
    assert publishers["payment-events"] == "payments"
    assert publishers["order-events"] == "orders"
    # Every service keeps a deny-list of revoked tokens, fed by user-events.
    assert all("user-events" in s.consumes for s in mesh.services.values())
    assert mesh.service("orders").dead_letter_topics == {"user-events.dlq", "payment-events.dlq"}
    assert mesh.service("users").load_balancer is LoadBalancer.ROUND_ROBIN
    assert mesh.service("payments").load_balancer is LoadBalancer.RANDOM


def test_topics_are_checked_against_the_topic_declaration(tmp_path: Path) -> None:
    topics = tmp_path / "topics.yaml"
    topics.write_text("topics:\n  order-events: {partitions: 1, retention_days: 1}\n")
    with pytest.raises(MeshDeclarationError, match=r"services.users.publishes: unknown topics \['user-events'\]"):
        load_mesh(topics_file=topics)
    topics.write_text("topics: []\n")
    with pytest.raises(MeshDeclarationError, match="'topics' must be a non-empty mapping of topic names"):
        load_mesh(topics_file=topics)
