"""What the cluster renderers share: names, labels, hosts and fixed cluster settings.

Everything about a service comes from the mesh declaration; this module only
holds what the declaration does not say because it is the same for every
service (image, resources, replica bounds) or belongs to the platform around
the mesh (the ingress gateway's identity, the Kafka cluster's name).
"""

from __future__ import annotations

from dataclasses import dataclass

from shopmesh_platform.mesh import MeshDeclaration

EDGE = "edge"
EDGE_PORT = 8080
KAFKA_CLUSTER = "shopmesh"
KAFKA_TLS_PORT = 9093
SERVICE_IMAGE = "shopmesh-service:0.1.0"
EDGE_IMAGE = "envoyproxy/envoy:v1.40.0"
INGRESS_GATEWAY_NAMESPACE = "istio-system"
INGRESS_GATEWAY_SERVICE_ACCOUNT = "istio-ingressgateway-service-account"
INGRESS_GATEWAY_SELECTOR = {"istio": "ingressgateway"}
GATEWAY_TLS_SECRET = "shopmesh-edge-tls"
JWT_ISSUER = "shopmesh-users"
JWT_AUDIENCE = "shopmesh"
PART_OF = {"app.kubernetes.io/part-of": "shopmesh"}
DRAIN_GRACE_SECONDS = 10
DRAIN_DELAY_SECONDS = 5
# Longer than the drain (delay, then grace) plus the sidecar's own shutdown.
TERMINATION_GRACE_SECONDS = 30
DATABASE_PORTS = {"postgres": 5432, "mongo": 27017}


@dataclass(frozen=True)
class Cluster:
    """The declaration plus the names it implies on a cluster."""

    mesh: MeshDeclaration

    @property
    def namespace(self) -> str:
        return self.mesh.namespace

    def principal(self, identity: str) -> str:
        """The Istio principal of a mesh identity (its SPIFFE id without the scheme)."""
        return f"{self.mesh.trust_domain}/ns/{self.namespace}/sa/{identity}"

    def host(self, service: str) -> str:
        return f"{service}.{self.namespace}.svc.cluster.local"

    @property
    def ingress_gateway_principal(self) -> str:
        return f"{self.mesh.trust_domain}/ns/{INGRESS_GATEWAY_NAMESPACE}/sa/{INGRESS_GATEWAY_SERVICE_ACCOUNT}"

    @property
    def jwks_uri(self) -> str:
        """The users service's JWKS, in the mesh: GetJwks, transcoded by the edge."""
        return f"http://{self.host(EDGE)}:{EDGE_PORT}/.well-known/jwks.json"

    @property
    def kafka_bootstrap(self) -> str:
        return f"{KAFKA_CLUSTER}-kafka-bootstrap.{self.namespace}.svc:{KAFKA_TLS_PORT}"


def labels(name: str) -> dict[str, str]:
    """Labels of one workload: `app` is what Istio and the NetworkPolicies select on."""
    return {"app": name, "app.kubernetes.io/name": name, **PART_OF}


def metadata(name: str, namespace: str, **extra: str) -> dict[str, object]:
    return {"name": name, "namespace": namespace, "labels": {**labels(extra.pop("app", name)), **extra}}
