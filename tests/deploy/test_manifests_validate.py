"""The rendered manifests pass the real projects' rules, and broken ones fail each validator.

Istio: the CRD schemas of istio.io/api plus strict decoding into istio.io/client-go
types; Kubernetes: strict decoding into k8s.io/api; Strimzi: its CRD schemas.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from shopmesh_render.validate import Checker, rendered_manifests

BROKEN_DESTINATION_RULE = """\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: users, namespace: shopmesh}
spec:
  host: users.shopmesh.svc.cluster.local
  trafficPolicy:
    circuitBreaker: {maxConnections: 1}
"""
WRONG_TYPE_VIRTUAL_SERVICE = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: users, namespace: shopmesh}
spec:
  hosts: users.shopmesh.svc.cluster.local
"""
UNKNOWN_FIELD_AUTHORIZATION = """\
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: users, namespace: shopmesh}
spec:
  action: ALLOW
  rules:
  - from: [{source: {principal: [cluster.local/ns/shopmesh/sa/edge]}}]
"""
BROKEN_DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: users, namespace: shopmesh}
spec:
  replicas: two
  selector: {matchLabels: {app: users}}
  template:
    metadata: {labels: {app: users}}
    spec:
      containers: [{name: users, image: x}]
"""
UNKNOWN_FIELD_SERVICE = """\
apiVersion: v1
kind: Service
metadata: {name: users, namespace: shopmesh}
spec:
  ports: [{name: grpc, port: 50051, appProtocl: grpc}]
"""
BROKEN_KAFKA_USER = """\
apiVersion: kafka.strimzi.io/v1
kind: KafkaUser
metadata: {name: users, namespace: shopmesh, labels: {strimzi.io/cluster: shopmesh}}
spec:
  authentication: {type: tls}
  authorization:
    type: simple
    acls:
    - resource: {type: topic, name: user-events, patternType: literal}
      operation: Write
    - resource: {type: topic, name: user-events, patternType: literal}
      operations: Read
"""
UNKNOWN_KIND = """\
apiVersion: example.com/v1
kind: Widget
metadata: {name: w}
"""


def test_rendered_manifests_are_valid(checker: Checker) -> None:
    manifests = rendered_manifests()
    assert len(manifests) >= 15, manifests
    result = checker.run(manifests)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "objects valid" in result.stdout


@pytest.mark.parametrize(
    ("manifest", "expected"),
    [
        # Istio: both the CRD schema and the client-go/protojson decoding must refuse it.
        (
            BROKEN_DESTINATION_RULE,
            [
                "schema: spec.trafficPolicy.circuitBreaker in body is a forbidden property",
                'unknown field "circuitBreaker"',
            ],
        ),
        (
            WRONG_TYPE_VIRTUAL_SERVICE,
            ["schema: spec.hosts in body must be of type array", "istio.io/client-go: json: cannot unmarshal string"],
        ),
        (
            UNKNOWN_FIELD_AUTHORIZATION,
            ["spec.rules[0].from[0].source.principal in body is a forbidden property", 'unknown field "principal"'],
        ),
        # Kubernetes: strict decoding into k8s.io/api.
        (BROKEN_DEPLOYMENT, ["k8s.io/api: json: cannot unmarshal string into Go struct field", "replicas"]),
        (UNKNOWN_FIELD_SERVICE, ['k8s.io/api: json: unknown field "appProtocl"']),
        # Strimzi: its CRD schema (unknown field and wrong type).
        (
            BROKEN_KAFKA_USER,
            [
                "schema: spec.authorization.acls[0].operation in body is a forbidden property",
                "schema: spec.authorization.acls[1].operations in body must be of type array",
            ],
        ),
        (UNKNOWN_KIND, ["no schema or type known for example.com/v1 Widget"]),
    ],
    ids=[
        "istio-circuit-breaker",
        "istio-wrong-type",
        "istio-unknown-field",
        "k8s-wrong-type",
        "k8s-unknown-field",
        "strimzi",
        "unknown-kind",
    ],
)
def test_broken_manifests_fail(checker: Checker, tmp_path: Path, manifest: str, expected: list[str]) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(manifest)
    result = checker.run([path])
    assert result.returncode == 1, result.stdout
    for message in expected:
        assert message in result.stdout, result.stdout


def test_duplicate_keys_fail(checker: Checker, tmp_path: Path) -> None:
    path = tmp_path / "duplicate.yaml"
    path.write_text("apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: a}\nmetadata: {name: b}\n")
    result = checker.run([path])
    assert result.returncode == 1
    assert 'key "metadata" already set' in result.stdout, result.stdout
