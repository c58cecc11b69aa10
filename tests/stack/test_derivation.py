"""The local stack derives every service fact from the mesh declaration.

Ports (declared defaults, SHOPMESH_PORT_<SERVICE>[_METRICS] overrides, free ports
for tests), databases (from `storage`), each service's environment and the start
order; and a service added only to a mesh document reaches the stack's settings
and the edge it renders. Nothing is started here.
"""

from __future__ import annotations

from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from shopmesh_edge.render import render
from shopmesh_platform.config import ConfigError
from shopmesh_platform.events.topics import DEFAULT_TOPICS_FILE
from shopmesh_platform.mesh import MeshDeclaration, StorageKind, load_mesh
from shopmesh_platform.migrations import MIGRATIONS_ROOT, MigrationError, discover, service_migrations
from shopmesh_stack.components import Edge, Jaeger, LocalStripe, Mailpit, Service
from shopmesh_stack.install import Installed
from shopmesh_stack.settings import Ports, ServicePorts, StackSettings, service_port_variables
from shopmesh_stack.stack import Stack
from shopmesh_stack.wiring import postgres_databases

NOWHERE = Path("/nonexistent")
# Constructing a Stack neither installs nor starts anything when given where the programs are.
INSTALLED = Installed(*(NOWHERE for _ in fields(Installed)))
# A service only a test declaration has.
EXTRA = "reviews"


def extra_service(grpc_port: int = 50099, metrics_port: int = 51099) -> dict[str, Any]:
    return {
        "package": "shopmesh.review.v1",
        "service": "ReviewService",
        "grpc_port": grpc_port,
        "metrics_port": metrics_port,
        "storage": {"kind": "postgres", "database": "reviews"},
        "consumes": ["user-events"],
        "methods": {"ListReviews": {"access": "public", "idempotent": True}, "PostReview": {"access": "user"}},
    }


def write_mesh(tmp_path: Path, document: dict[str, Any]) -> Path:
    path = tmp_path / "mesh.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def stack_of(settings: StackSettings) -> Stack:
    return Stack(settings, INSTALLED)


@pytest.fixture
def mesh() -> MeshDeclaration:
    return load_mesh()


def test_the_default_ports_are_the_declared_ones(mesh: MeshDeclaration) -> None:
    ports = StackSettings.from_env({}).ports
    assert list(ports.services) == list(mesh.services)
    for name, decl in mesh.services.items():
        assert (ports.grpc(name), ports.metrics(name)) == (decl.grpc_port, decl.metrics_port)
    assert (ports.edge, ports.edge_metrics, ports.postgres, ports.kafka) == (8080, 9901, 55432, 9092)


def test_each_service_port_is_overridden_by_its_own_variables(mesh: MeshDeclaration) -> None:
    env = {}
    for i, name in enumerate(mesh.services):
        grpc_variable, metrics_variable = service_port_variables(name)
        env[grpc_variable] = str(61000 + i)
        env[metrics_variable] = str(62000 + i)
    ports = Ports.from_env(env, mesh)
    assert [(p.grpc, p.metrics) for p in ports.services.values()] == [
        (61000 + i, 62000 + i) for i in range(len(mesh.services))
    ]
    first = next(iter(mesh.services))
    assert service_port_variables(first) == (f"SHOPMESH_PORT_{first.upper()}", f"SHOPMESH_PORT_{first.upper()}_METRICS")


def test_a_bad_port_override_names_the_variable(mesh: MeshDeclaration) -> None:
    variable = service_port_variables(next(iter(mesh.services)))[1]
    with pytest.raises(ConfigError, match=f"{variable}=70000 is out of range"):
        Ports.from_env({variable: "70000"}, mesh)


def test_a_service_whose_port_variable_is_a_components_is_refused(
    tmp_path: Path, mesh_document: dict[str, Any]
) -> None:
    mesh_document["services"]["kafka"] = extra_service()
    mesh_file = write_mesh(tmp_path, mesh_document)
    with pytest.raises(ConfigError, match="SHOPMESH_PORT_KAFKA would select both the kafka port and service 'kafka'"):
        StackSettings.from_env({"SHOPMESH_MESH_FILE": str(mesh_file)})


def test_free_ports_cover_every_service_all_differ_and_round_trip_through_the_variables(
    mesh: MeshDeclaration,
) -> None:
    ports = Ports.free(mesh)
    assert list(ports.services) == list(mesh.services)
    numbers = list(ports.all_ports())
    assert len(numbers) == len(set(numbers)) == len(Ports.component_names()) + 2 * len(mesh.services)
    assert Ports.from_env(ports.variables(), mesh) == ports


def test_services_start_in_declaration_order_after_the_infrastructure_and_before_the_edge(
    mesh: MeshDeclaration,
) -> None:
    stack = stack_of(StackSettings.from_env({}))
    order = [c.name for c in stack.components]
    services = [c.name for c in stack.components if isinstance(c, Service)]
    assert services == list(mesh.services)
    # The services export their traces to Jaeger, so it starts just before them.
    assert order.index(services[0]) == order.index(Jaeger.name) + 1
    assert order.index(LocalStripe.name) < order.index(Mailpit.name) < order.index(Jaeger.name)
    assert order[-1] == stack.edge.name
    assert isinstance(stack.components[-1], Edge)


def test_each_postgres_service_has_its_declared_database(mesh: MeshDeclaration) -> None:
    expected = {
        name: decl.storage.database
        for name, decl in mesh.services.items()
        if decl.storage and decl.storage.kind is StorageKind.POSTGRES
    }
    assert expected, "the mesh declares PostgreSQL services"
    assert postgres_databases(mesh) == expected


def test_each_service_environment_points_at_its_declared_database(tmp_path: Path, mesh: MeshDeclaration) -> None:
    settings = StackSettings.isolated(tmp_path)
    stack = stack_of(settings)
    for name, decl in mesh.services.items():
        env = stack.services[name].env()
        assert decl.storage is not None
        if decl.storage.kind is StorageKind.POSTGRES:
            assert env["SHOPMESH_DATABASE_URL"] == (
                f"postgresql://postgres@127.0.0.1:{settings.ports.postgres}/{decl.storage.database}"
            )
            assert "SHOPMESH_MONGODB_URL" not in env
        else:
            assert env["SHOPMESH_MONGODB_URL"] == f"mongodb://127.0.0.1:{settings.ports.ferretdb}/"
            assert env["SHOPMESH_MONGODB_DATABASE"] == decl.storage.database
            assert "SHOPMESH_DATABASE_URL" not in env
    kinds = {decl.storage.kind for decl in mesh.services.values() if decl.storage}
    assert kinds == set(StorageKind), "both storage kinds are exercised"


def test_each_service_gets_its_ports_every_address_the_mesh_file_and_a_directory_of_its_own(
    tmp_path: Path, mesh: MeshDeclaration
) -> None:
    settings = StackSettings.isolated(tmp_path)
    stack = stack_of(settings)
    addresses = {
        f"SHOPMESH_ADDRESS_{other.upper()}": f"127.0.0.1:{settings.ports.grpc(other)}" for other in mesh.services
    }
    for name in mesh.services:
        env = stack.services[name].env()
        assert env["SHOPMESH_GRPC_PORT"] == str(settings.ports.grpc(name))
        assert env["SHOPMESH_METRICS_PORT"] == str(settings.ports.metrics(name))
        assert {k: v for k, v in env.items() if k.startswith("SHOPMESH_ADDRESS_")} == addresses
        assert env["SHOPMESH_MESH_FILE"] == str(settings.mesh_file)
        assert Path(env["SHOPMESH_JWT_KEY_DIR"]).parent == settings.data_dir / name


def test_two_services_cannot_share_a_database_nor_take_the_clusters_own(
    tmp_path: Path, mesh_document: dict[str, Any]
) -> None:
    postgres = [name for name, raw in mesh_document["services"].items() if raw["storage"]["kind"] == "postgres"]
    first, second = postgres[:2]
    shared = mesh_document["services"][first]["storage"]["database"]
    mesh_document["services"][second]["storage"]["database"] = shared
    with pytest.raises(ConfigError, match=f"services.{second}.storage.database: '{shared}' is already {first}'s"):
        postgres_databases(load_mesh(write_mesh(tmp_path, mesh_document)))
    mesh_document["services"][second]["storage"]["database"] = "ferretdb"
    with pytest.raises(ConfigError, match=f"services.{second}.storage.database: 'ferretdb' is the stack's own"):
        postgres_databases(load_mesh(write_mesh(tmp_path, mesh_document)))


def test_a_service_declared_only_in_the_mesh_document_reaches_the_stack_and_the_edge(
    tmp_path: Path, mesh_document: dict[str, Any]
) -> None:
    mesh_document["services"][EXTRA] = extra_service(grpc_port=50099, metrics_port=51099)
    mesh_file = write_mesh(tmp_path, mesh_document)
    grpc_variable, _ = service_port_variables(EXTRA)
    settings = StackSettings.from_env(
        {"SHOPMESH_MESH_FILE": str(mesh_file), "SHOPMESH_DATA_DIR": str(tmp_path / "data"), grpc_variable: "61234"}
    )
    # Ports: the override for its gRPC port, the declared metrics port.
    assert settings.ports.services[EXTRA] == ServicePorts(61234, 51099)
    assert settings.services[-1] == EXTRA
    # Its database and environment.
    assert postgres_databases(settings.mesh)[EXTRA] == "reviews"
    stack = stack_of(settings)
    env = stack.services[EXTRA].env()
    assert env["SHOPMESH_DATABASE_URL"].endswith(f":{settings.ports.postgres}/reviews")
    assert env["SHOPMESH_GRPC_PORT"] == "61234"
    assert env["SHOPMESH_MESH_FILE"] == str(mesh_file.resolve())
    # Every other service can reach it.
    assert all(s.env()[f"SHOPMESH_ADDRESS_{EXTRA.upper()}"] == "127.0.0.1:61234" for s in stack.services.values())
    # The edge: an upstream cluster on its port (verifying its SPIFFE id), and routes for its methods.
    config = render(settings.mesh, stack.edge.edge_settings())
    clusters = {c["name"]: c for c in config["static_resources"]["clusters"]}
    endpoint = clusters[EXTRA]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    assert endpoint["address"]["socket_address"]["port_value"] == 61234
    assert f"/sa/{EXTRA}" in yaml.safe_dump(clusters[EXTRA]["transport_socket"])
    routes = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    paths = {r["match"].get("path") for r in routes["route_config"]["virtual_hosts"][0]["routes"]}
    assert {"/shopmesh.review.v1.ReviewService/ListReviews", "/shopmesh.review.v1.ReviewService/PostReview"} <= paths


def test_a_topic_declared_only_in_the_topics_document_reaches_the_stack_and_the_services(
    tmp_path: Path, mesh_document: dict[str, Any]
) -> None:
    topics_document = yaml.safe_load(DEFAULT_TOPICS_FILE.read_text())
    topics_document["topics"]["review-events"] = {"partitions": 2, "retention_days": 1, "key": "review id"}
    topics_file = tmp_path / "topics.yaml"
    topics_file.write_text(yaml.safe_dump(topics_document))
    mesh_document["services"][EXTRA] = {**extra_service(), "publishes": ["review-events"]}
    mesh_file = write_mesh(tmp_path, mesh_document)
    # Without the topics document the declaration names an unknown topic: refused.
    with pytest.raises(ConfigError, match="review-events"):
        StackSettings.from_env({"SHOPMESH_MESH_FILE": str(mesh_file)})
    settings = StackSettings.from_env({"SHOPMESH_MESH_FILE": str(mesh_file), "SHOPMESH_TOPICS_FILE": str(topics_file)})
    assert settings.mesh.service(EXTRA).publishes == frozenset({"review-events"})
    assert settings.topics_file == topics_file.resolve()
    services = stack_of(settings).services.values()
    assert all(s.env()["SHOPMESH_TOPICS_FILE"] == str(topics_file.resolve()) for s in services)


def test_a_service_without_migrations_of_its_own_gets_the_platforms_only_in_the_stack(tmp_path: Path) -> None:
    (tmp_path / "platform").symlink_to(MIGRATIONS_ROOT / "platform")
    (tmp_path / "users").symlink_to(MIGRATIONS_ROOT / "users")
    assert service_migrations(EXTRA, tmp_path, required=False) == []
    assert [m.name for m in service_migrations("users", tmp_path, required=False)] == [
        m.name for m in discover("users", tmp_path)
    ]
    # Where one is required (the cluster's migration Jobs), a missing directory is still an error.
    with pytest.raises(MigrationError, match="no migrations directory"):
        service_migrations(EXTRA, tmp_path)


def test_the_edge_refuses_to_render_a_declared_service_without_an_upstream(tmp_path: Path) -> None:
    settings = StackSettings.from_env({"SHOPMESH_DATA_DIR": str(tmp_path)})
    edge_settings = stack_of(settings).edge.edge_settings()
    last = settings.services[-1]
    partial = {name: port for name, port in edge_settings.upstream_ports.items() if name != last}
    with pytest.raises(ValueError, match=f"no upstream port for the declared services \\['{last}'\\]"):
        render(settings.mesh, replace(edge_settings, upstream_ports=partial))
