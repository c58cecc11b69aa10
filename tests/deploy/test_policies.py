"""The rendered cluster enforces what the declaration says, and what the local mesh enforces.

Each check reads the committed, rendered files (not the renderer's functions):
the AuthorizationPolicies' allow-matrix against the local auth interceptor,
method by method and identity by identity; the NetworkPolicies' caller pairs
against the same matrix; the Strimzi ACLs against the declared topics; the
Deployments' probes, limits, identities and secrets.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import re
import shutil
from pathlib import Path
from typing import Any, cast

import pytest

from shopmesh_edge.render import server_streaming_paths
from shopmesh_platform.context import Caller
from shopmesh_platform.errors import DomainError
from shopmesh_platform.events.consumer import consumer_group
from shopmesh_platform.interceptors.auth import PLATFORM_SERVICE_PREFIXES, AuthInterceptor
from shopmesh_platform.interceptors.base import CallInfo
from shopmesh_platform.mesh import AccessClass, MeshDeclaration, load_mesh
from shopmesh_render.__main__ import RENDERED_DIRS, render_all, stale_files
from shopmesh_render.routes import rest_routes
from tests.deploy.conftest import load_objects

ISSUER_PRINCIPALS = ["shopmesh-users/*"]


@dataclasses.dataclass(frozen=True)
class FakeCall:
    """What the interceptor reads from a call: its method, metadata and (unused) context."""

    method: str
    headers: dict[str, str]
    context: Any = None

    def metadata(self, key: str) -> str | None:
        return self.headers.get(key)


class AdminUser:
    """Accepts any token as an admin, so only the identity decides."""

    async def verify(self, token: str) -> Caller:
        return Caller(user_id="u-1", role="admin", token_id="t-1")


async def interceptor_allows(mesh: MeshDeclaration, identity: str, path: str) -> bool:
    """Whether the local auth interceptor lets `identity` call `path` (with a valid admin token)."""
    interceptor = AuthInterceptor(
        mesh, user_tokens=AdminUser(), peer_identity=lambda _context: identity, identities_enforced=True
    )
    call = cast(CallInfo, FakeCall(path, {"authorization": "Bearer t"}))

    async def proceed(_call: CallInfo | None = None) -> None:
        return None

    try:
        await interceptor.around(call, proceed)
    except DomainError:
        return False
    return True


def principal(mesh: MeshDeclaration, identity: str) -> str:
    return f"{mesh.trust_domain}/ns/{mesh.namespace}/sa/{identity}"


def istio_path_matches(pattern: str, path: str) -> bool:
    if pattern.endswith("*"):
        return path.startswith(pattern[:-1])
    if pattern.startswith("*"):
        return path.endswith(pattern[1:])
    return pattern == path


def policy_decision(policy: dict[str, Any], who: str, path: str) -> tuple[bool, bool]:
    """(allowed, needs a request principal) for one principal and path under an ALLOW policy."""
    for rule in policy["spec"].get("rules", []):
        sources = [f["source"] for f in rule.get("from", [])]
        operations = [t["operation"] for t in rule.get("to", [])]
        for source in sources:
            if who not in source.get("principals", []):
                continue
            if any(istio_path_matches(p, path) for op in operations for p in op.get("paths", [])):
                return True, source.get("requestPrincipals") == ISSUER_PRINCIPALS
    return False, False


@pytest.fixture(scope="module")
def mesh() -> MeshDeclaration:
    return load_mesh()


@pytest.fixture(scope="module")
def policies() -> dict[str, dict[str, Any]]:
    return {p["metadata"]["name"]: p for p in load_objects("istio/authorization-policies.yaml")}


def k8s_objects(kind: str) -> list[dict[str, Any]]:
    return [
        o
        for path in sorted((Path(__file__).resolve().parents[2] / "k8s").glob("*.yaml"))
        if path.name != "kustomization.yaml"
        for o in load_objects(f"k8s/{path.name}")
        if o["kind"] == kind
    ]


def test_render_on_a_clean_tree_changes_nothing(repo: Path, tmp_path: Path) -> None:
    files = render_all()
    assert stale_files(repo, files) == []
    # The check notices an edited file and a file nobody renders any more.
    for directory in RENDERED_DIRS:
        shutil.copytree(repo / directory, tmp_path / directory)
    (tmp_path / "istio/destination-rules.yaml").write_text("# edited\n")
    leftover = tmp_path / "k8s/billing.yaml"
    leftover.write_text((repo / "k8s/users.yaml").read_text())
    assert stale_files(tmp_path, files) == ["istio/destination-rules.yaml", "k8s/billing.yaml (no longer rendered)"]


def test_namespace_denies_by_default(policies: dict[str, dict[str, Any]]) -> None:
    assert policies["default-deny"]["spec"] == {}
    peer = load_objects("istio/peer-authentication.yaml")
    assert [p["spec"] for p in peer] == [{"mtls": {"mode": "STRICT"}}]


async def test_authorization_policies_equal_the_local_interceptor(
    mesh: MeshDeclaration, policies: dict[str, dict[str, Any]]
) -> None:
    """Method by method, identity by identity: the same allow-matrix, and user methods need a JWT."""
    checked = 0
    for service, decl in mesh.services.items():
        policy = policies[service]
        assert policy["spec"]["action"] == "ALLOW"
        assert policy["spec"]["selector"] == {"matchLabels": {"app": service}}
        paths = [m.path for m in decl.methods.values()]
        paths += [f"{prefix}Check" for prefix in PLATFORM_SERVICE_PREFIXES]
        paths.append(f"/{decl.full_name}/Undeclared")
        for identity in mesh.identities:
            for path in paths:
                allowed, needs_token = policy_decision(policy, principal(mesh, identity), path)
                expected = await interceptor_allows(mesh, identity, path)
                assert allowed == expected, (identity, path)
                method = mesh.method(path)
                token_expected = (
                    allowed and method is not None and method.access is AccessClass.USER and identity in mesh.front_door
                )
                assert needs_token == token_expected, (identity, path)
                checked += 1
    assert checked > 200


def test_edge_requires_a_token_on_user_routes_only(mesh: MeshDeclaration, policies: dict[str, dict[str, Any]]) -> None:
    deny = policies["edge-require-token"]["spec"]
    assert deny["action"] == "DENY"
    assert deny["rules"][0]["from"] == [{"source": {"notRequestPrincipals": ["*"]}}]
    operations = [t["operation"] for t in deny["rules"][0]["to"]]

    def denied_without_token(verb: str | None, path: str) -> bool:
        return any(
            (verb is None or "methods" not in op or verb in op["methods"])
            and any(istio_path_matches(p, path) for p in op["paths"])
            for op in operations
        )

    for method in mesh.all_methods():
        assert denied_without_token(None, method.path) == (method.access is AccessClass.USER), method.path
    routes = rest_routes(mesh)
    assert routes
    for route in routes:
        for value in ("x1", "me", "register", "login", "0f8fad5b-d9cb-469f-a165-70867728950e"):
            path = route.example_path(value)
            # A concrete path may belong to another route (`/users/me` is GetMe): judge by the route it hits.
            hit = next(r for r in routes if r.verb == route.verb and fnmatch.fnmatchcase(path, _glob(r.template)))
            needs = hit.method.access is AccessClass.USER
            assert denied_without_token(route.verb, path) == needs, (route.verb, path, hit.method.name)


def _glob(template: str) -> str:
    return re.sub(r"\{[^}]*\}", "*", template)


def test_network_policies_allow_the_same_caller_pairs(
    mesh: MeshDeclaration, policies: dict[str, dict[str, Any]]
) -> None:
    pairs_from_istio = set()
    for service in mesh.services:
        for rule in policies[service]["spec"]["rules"]:
            for source in rule["from"]:
                for who in source["source"]["principals"]:
                    pairs_from_istio.add((who.rsplit("/", 1)[1], service))
    pairs_from_network = set()
    for policy in k8s_objects("NetworkPolicy"):
        target = policy["spec"]["podSelector"]["matchLabels"].get("app")
        if target not in mesh.services:
            continue
        port = mesh.service(target).grpc_port
        for rule in policy["spec"].get("ingress", []):
            if {"protocol": "TCP", "port": port} not in rule.get("ports", []):
                continue
            for peer in rule["from"]:
                assert set(peer) == {"podSelector"}, peer  # only pods of this namespace, by identity
                pairs_from_network.add((peer["podSelector"]["matchLabels"]["app"], target))
    assert pairs_from_network == pairs_from_istio
    assert ("orders", "inventory") in pairs_from_network
    assert ("payments", "inventory") not in pairs_from_network


def test_strimzi_acls_equal_the_declared_topics(mesh: MeshDeclaration) -> None:
    users = {u["metadata"]["name"]: u for u in load_objects("kafka/strimzi/users.yaml")}
    assert set(users) == set(mesh.services)
    writers: dict[str, set[str]] = {}
    for name, decl in mesh.services.items():
        spec = users[name]["spec"]
        assert spec["authentication"] == {"type": "tls"}
        assert spec["authorization"]["type"] == "simple"
        acls = spec["authorization"]["acls"]
        assert all(acl["type"] == "allow" for acl in acls)
        topic_acls = [a for a in acls if a["resource"]["type"] == "topic"]
        assert all(a["resource"]["patternType"] == "literal" for a in topic_acls)
        written = {a["resource"]["name"] for a in topic_acls if "Write" in a["operations"]}
        read = {a["resource"]["name"] for a in topic_acls if "Read" in a["operations"]}
        assert written == decl.publishes | {f"{t}.dlq" for t in decl.consumes}, name
        assert read == decl.consumes, name
        assert {a["resource"]["type"] for a in acls} <= {"topic", "group"}
        # Every consumer group the runtime names for this service (`<service>.<name>`) may be read.
        group_prefixes = [a["resource"]["name"] for a in acls if a["resource"]["type"] == "group"]
        if decl.consumes:
            assert any(consumer_group(name, "order-events").startswith(p) for p in group_prefixes), name
        for topic in written:
            writers.setdefault(topic, set()).add(name)
    assert writers["payment-events"] == {"payments"}
    topics = {t["spec"]["topicName"] for t in load_objects("kafka/strimzi/topics.yaml")}
    assert {t for ts in (d.publishes | d.consumes for d in mesh.services.values()) for t in ts} <= topics


def test_topics_follow_the_topic_declaration() -> None:
    topics = {t["spec"]["topicName"]: t["spec"] for t in load_objects("kafka/strimzi/topics.yaml")}
    assert topics["payment-events"]["partitions"] == 3
    assert topics["payment-events"]["config"]["retention.ms"] == 90 * 24 * 3600 * 1000
    assert topics["order-events.dlq"]["partitions"] == 6
    assert all(t["replicas"] == 3 and t["config"]["min.insync.replicas"] == 2 for t in topics.values())
    kafka = next(o for o in load_objects("kafka/strimzi/kafka.yaml") if o["kind"] == "Kafka")
    assert kafka["spec"]["kafka"]["authorization"] == {"type": "simple"}
    assert kafka["spec"]["kafka"]["config"]["auto.create.topics.enable"] is False
    listener = kafka["spec"]["kafka"]["listeners"][0]
    assert listener["tls"] is True and listener["authentication"] == {"type": "tls"}


SECRET_WORDS = ("SECRET", "PASSWORD", "API_KEY", "DATABASE_URL", "MONGODB_URL", "TOKEN")


def test_deployments_have_probes_limits_identity_and_no_inline_secret(mesh: MeshDeclaration) -> None:
    deployments = {d["metadata"]["name"]: d for d in k8s_objects("Deployment")}
    assert set(deployments) == {*mesh.services, "edge"}
    accounts = {a["metadata"]["name"] for a in k8s_objects("ServiceAccount")}
    assert k8s_objects("Secret") == []
    for name, deployment in deployments.items():
        pod = deployment["spec"]["template"]["spec"]
        assert pod["serviceAccountName"] == name and name in accounts
        assert pod["terminationGracePeriodSeconds"] > 15  # drain delay 5 s + grace 10 s
        assert pod["securityContext"]["runAsNonRoot"] is True
        for container in pod["containers"]:
            assert container["readinessProbe"] and container["livenessProbe"], name
            assert set(container["resources"]["limits"]) == {"cpu", "memory"}, name
            assert set(container["resources"]["requests"]) == {"cpu", "memory"}, name
            assert container["securityContext"]["readOnlyRootFilesystem"] is True
            for env in container.get("env", []):
                if any(word in env["name"] for word in SECRET_WORDS):
                    assert "value" not in env and "secretKeyRef" in env["valueFrom"], (name, env["name"])
        if name in mesh.services:
            probe = container["readinessProbe"]["grpc"]
            assert probe["port"] == mesh.service(name).grpc_port
    for config in k8s_objects("ConfigMap"):
        assert not [k for k in config.get("data", {}) if any(word in k for word in SECRET_WORDS)], config["metadata"]
    settings = {c["metadata"]["name"]: c["data"] for c in k8s_objects("ConfigMap")}
    for name in mesh.services:
        # The sidecar does mTLS; the service reads the identity its sidecar appended to XFCC.
        assert settings[f"{name}-settings"]["MESH_TLS"] == "sidecar"


def test_services_speak_grpc_and_scale_safely(mesh: MeshDeclaration) -> None:
    services = {s["metadata"]["name"]: s for s in k8s_objects("Service")}
    for name, decl in mesh.services.items():
        grpc = next(p for p in services[name]["spec"]["ports"] if p["name"] == "grpc")
        assert grpc == {"name": "grpc", "port": decl.grpc_port, "targetPort": "grpc", "appProtocol": "grpc"}
    assert {p["metadata"]["name"] for p in k8s_objects("PodDisruptionBudget")} == {*mesh.services, "edge"}
    assert {h["metadata"]["name"] for h in k8s_objects("HorizontalPodAutoscaler")} == {*mesh.services, "edge"}


def test_retries_only_for_idempotent_methods(mesh: MeshDeclaration) -> None:
    for service in load_objects("istio/virtual-services.yaml"):
        for route in service["spec"]["http"]:
            method = mesh.method(route["match"][0]["uri"]["exact"]) if "match" in route else None
            if method is None:
                assert route["retries"] == {"attempts": 0}
                continue
            # A server stream has no timeout ("0s"): it lives until the client leaves.
            streaming = method.path in server_streaming_paths()
            assert route["timeout"] == ("0s" if streaming else f"{method.timeout_seconds:g}s"), method.path
            assert (route["retries"]["attempts"] > 0) == method.idempotent, method.path
    rules = {r["metadata"]["name"]: r["spec"]["trafficPolicy"] for r in load_objects("istio/destination-rules.yaml")}
    assert rules["users"]["loadBalancer"] == {"simple": "ROUND_ROBIN"}
    assert rules["orders"]["loadBalancer"] == {"simple": "LEAST_REQUEST"}
    assert rules["payments"]["loadBalancer"] == {"simple": "RANDOM"}
    assert all("outlierDetection" in r and "consecutive5xxErrors" in r["outlierDetection"] for r in rules.values())


def test_edge_runs_the_local_edge_config_adapted_to_the_cluster(mesh: MeshDeclaration) -> None:
    import yaml

    config_map = next(c for c in k8s_objects("ConfigMap") if c["metadata"]["name"] == "edge-config")
    envoy = yaml.safe_load(config_map["data"]["envoy.yaml"])
    listener = envoy["static_resources"]["listeners"][0]
    assert listener["address"]["socket_address"] == {"address": "0.0.0.0", "port_value": 8080}
    clusters = {c["name"]: c for c in envoy["static_resources"]["clusters"]}
    for name, decl in mesh.services.items():
        cluster = clusters[name]
        assert cluster["type"] == "STRICT_DNS"
        # Plaintext to the local sidecar, which does the mTLS.
        assert "transport_socket" not in cluster
        endpoint = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
        assert endpoint["address"]["socket_address"] == {
            "address": f"{name}.shopmesh.svc.cluster.local",
            "port_value": decl.grpc_port,
        }
    assert "shopmesh.binpb" in config_map["binaryData"]


def test_fault_injection_is_an_opt_in_overlay() -> None:
    assert all("fault" not in r for v in load_objects("istio/virtual-services.yaml") for r in v["spec"]["http"])
    (patched,) = load_objects("istio/overlays/fault-users/users-fault.yaml")
    assert patched["metadata"]["name"] == "users"
    delays = [r["fault"]["delay"] for r in patched["spec"]["http"]]
    assert delays and all(d == {"percentage": {"value": 0.1}, "fixedDelay": "5s"} for d in delays)
