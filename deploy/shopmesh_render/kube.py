"""Kubernetes manifests for the services and the edge, from the declaration.

Per service: a ServiceAccount (its mesh identity), a ConfigMap of settings, a
Deployment (native gRPC probes, requests and limits, non-root read-only root
filesystem, MESH_TLS=sidecar: the sidecar does mTLS and the service reads the
caller from the x-forwarded-client-cert element its own sidecar appended), a
Service (`appProtocol: grpc`), a PodDisruptionBudget, a HorizontalPodAutoscaler,
a NetworkPolicy allowing exactly the declared callers, and for PostgreSQL
services a migration Job. Secrets are only referenced: their names and keys are
documented in k8s/README.md; no value is ever written here.
"""

from __future__ import annotations

import base64
from typing import Any

from shopmesh_platform.mesh import ServiceDecl, StorageKind
from shopmesh_platform.server import LIVENESS_SERVICE
from shopmesh_render.cluster import (
    DATABASE_PORTS,
    DRAIN_DELAY_SECONDS,
    DRAIN_GRACE_SECONDS,
    EDGE,
    EDGE_IMAGE,
    EDGE_PORT,
    INGRESS_GATEWAY_NAMESPACE,
    INGRESS_GATEWAY_SELECTOR,
    JWT_AUDIENCE,
    JWT_ISSUER,
    KAFKA_CLUSTER,
    KAFKA_TLS_PORT,
    PART_OF,
    SERVICE_IMAGE,
    TERMINATION_GRACE_SECONDS,
    Cluster,
    labels,
)
from shopmesh_render.istio import allow_matrix

Object = dict[str, Any]
USER_ID = 10001
KAFKA_CERTS = "/etc/shopmesh/kafka"
JWT_KEYS = "/etc/shopmesh/jwt-keys"
EDGE_CONFIG = "/etc/envoy"
EDGE_DESCRIPTOR_FILE = "shopmesh.binpb"
EDGE_ADMIN_PORT = 9901
ISTIOD = {"namespace": "istio-system", "labels": {"app": "istiod"}, "ports": [15012]}
STRIPE_HTTPS_PORT = 443
# Mail submission with STARTTLS (RFC 6409) to the relay named in the notifications-smtp Secret.
SMTP_SUBMISSION_PORT = 587


def _meta(cluster: Cluster, name: str, app: str | None = None, **extra: Any) -> Object:
    return {"name": name, "namespace": cluster.namespace, "labels": labels(app or name), **extra}


def namespace(cluster: Cluster) -> Object:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": cluster.namespace, "labels": {"istio-injection": "enabled", **PART_OF}},
    }


def service_account(cluster: Cluster, name: str) -> Object:
    # The pod's token is not mounted into the app: only Istio's own projected token is used.
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _meta(cluster, name),
        "automountServiceAccountToken": False,
    }


def settings(cluster: Cluster, decl: ServiceDecl) -> Object:
    data = {
        "MESH_TLS": "sidecar",
        "SHOPMESH_BIND_HOST": "0.0.0.0",
        "SHOPMESH_GRPC_PORT": str(decl.grpc_port),
        "SHOPMESH_METRICS_PORT": str(decl.metrics_port),
        "SHOPMESH_DRAIN_GRACE_SECONDS": str(DRAIN_GRACE_SECONDS),
        "SHOPMESH_DRAIN_DELAY_SECONDS": str(DRAIN_DELAY_SECONDS),
        "SHOPMESH_LOG_LEVEL": "info",
        "SHOPMESH_JWT_ISSUER": JWT_ISSUER,
        "SHOPMESH_JWT_AUDIENCE": JWT_AUDIENCE,
        "SHOPMESH_KAFKA_BOOTSTRAP": cluster.kafka_bootstrap,
        "SHOPMESH_KAFKA_CA_FILE": f"{KAFKA_CERTS}/ca/ca.crt",
        "SHOPMESH_KAFKA_CERT_FILE": f"{KAFKA_CERTS}/user/user.crt",
        "SHOPMESH_KAFKA_KEY_FILE": f"{KAFKA_CERTS}/user/user.key",
        **{
            f"SHOPMESH_ADDRESS_{other.upper()}": f"{cluster.host(other)}:{cluster.mesh.service(other).grpc_port}"
            for other in cluster.mesh.services
            if other != decl.name
        },
    }
    if decl.storage is not None and decl.storage.kind is StorageKind.MONGO:
        data["SHOPMESH_MONGODB_DATABASE"] = decl.storage.database
    if decl.name == "notifications":
        data["SHOPMESH_SMTP_PORT"] = str(SMTP_SUBMISSION_PORT)
        data["SHOPMESH_SMTP_STARTTLS"] = "true"
    if decl.name == "users":
        data["SHOPMESH_JWT_KEY_DIR"] = JWT_KEYS
        data["SHOPMESH_JWT_GENERATE_KEY"] = "false"
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(cluster, f"{decl.name}-settings", app=decl.name),
        "data": dict(sorted(data.items())),
    }


def _secret_env(variable: str, secret: str, key: str) -> Object:
    return {"name": variable, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def secret_env(decl: ServiceDecl) -> list[Object]:
    """Environment variables read from Secrets (names and keys documented in k8s/README.md)."""
    env = []
    if decl.storage is not None:
        variable = "SHOPMESH_DATABASE_URL" if decl.storage.kind is StorageKind.POSTGRES else "SHOPMESH_MONGODB_URL"
        env.append(_secret_env(variable, f"{decl.name}-database", "url"))
    if decl.name == "payments":
        env.append(_secret_env("SHOPMESH_STRIPE_API_KEY", "payments-stripe", "api-key"))
        env.append(_secret_env("SHOPMESH_STRIPE_WEBHOOK_SECRET", "payments-stripe", "webhook-secret"))
    if decl.name == "notifications":
        env.append(_secret_env("SHOPMESH_SMTP_HOST", "notifications-smtp", "host"))
        env.append(_secret_env("SHOPMESH_SMTP_USERNAME", "notifications-smtp", "username"))
        env.append(_secret_env("SHOPMESH_SMTP_PASSWORD", "notifications-smtp", "password"))
        env.append(_secret_env("SHOPMESH_MAIL_FROM", "notifications-smtp", "from"))
    return env


def _security_context() -> tuple[Object, Object]:
    pod = {
        "runAsNonRoot": True,
        "runAsUser": USER_ID,
        "runAsGroup": USER_ID,
        "fsGroup": USER_ID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    container = {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    return pod, container


def _secret_volume(name: str, secret: str, items: list[str] | None = None) -> Object:
    source: Object = {"secretName": secret, "defaultMode": 0o440}
    if items:
        source["items"] = [{"key": key, "path": key} for key in items]
    return {"name": name, "secret": source}


def deployment(cluster: Cluster, decl: ServiceDecl) -> Object:
    pod_security, container_security = _security_context()
    volumes: list[Object] = [
        {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
        # Strimzi's Secrets: the cluster CA (to trust the brokers) and this service's KafkaUser.
        _secret_volume("kafka-ca", f"{KAFKA_CLUSTER}-cluster-ca-cert", ["ca.crt"]),
        _secret_volume("kafka-user", decl.name, ["user.crt", "user.key"]),
    ]
    mounts: list[Object] = [
        {"name": "tmp", "mountPath": "/tmp"},
        {"name": "kafka-ca", "mountPath": f"{KAFKA_CERTS}/ca", "readOnly": True},
        {"name": "kafka-user", "mountPath": f"{KAFKA_CERTS}/user", "readOnly": True},
    ]
    if decl.name == "users":
        volumes.append(_secret_volume("jwt-keys", "users-jwt-keys"))
        mounts.append({"name": "jwt-keys", "mountPath": JWT_KEYS, "readOnly": True})
    container = {
        "name": decl.name,
        "image": SERVICE_IMAGE,
        "imagePullPolicy": "IfNotPresent",
        "command": ["python", "-m", f"shopmesh_{decl.name}"],
        "ports": [
            {"name": "grpc", "containerPort": decl.grpc_port, "protocol": "TCP"},
            {"name": "http-metrics", "containerPort": decl.metrics_port, "protocol": "TCP"},
        ],
        "envFrom": [{"configMapRef": {"name": f"{decl.name}-settings"}}],
        "env": secret_env(decl),
        "readinessProbe": {
            "grpc": {"port": decl.grpc_port, "service": ""},
            "periodSeconds": 5,
            "failureThreshold": 2,
        },
        "livenessProbe": {
            "grpc": {"port": decl.grpc_port, "service": LIVENESS_SERVICE},
            "initialDelaySeconds": 10,
            "periodSeconds": 10,
            "failureThreshold": 3,
        },
        "startupProbe": {
            "grpc": {"port": decl.grpc_port, "service": LIVENESS_SERVICE},
            "periodSeconds": 2,
            "failureThreshold": 60,
        },
        "resources": {
            "requests": {"cpu": "100m", "memory": "192Mi"},
            "limits": {"cpu": "1", "memory": "512Mi"},
        },
        "securityContext": container_security,
        "volumeMounts": mounts,
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(cluster, decl.name),
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": decl.name}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {
                    "labels": labels(decl.name),
                    "annotations": {
                        # The app is killed only after the sidecar has let in-flight calls drain.
                        "proxy.istio.io/config": '{"holdApplicationUntilProxyStarts": true}',
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": str(decl.metrics_port),
                    },
                },
                "spec": {
                    "serviceAccountName": decl.name,
                    "automountServiceAccountToken": False,
                    "terminationGracePeriodSeconds": TERMINATION_GRACE_SECONDS,
                    "securityContext": pod_security,
                    "containers": [container],
                    "volumes": volumes,
                },
            },
        },
    }


def service(cluster: Cluster, decl: ServiceDecl) -> Object:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(cluster, decl.name),
        "spec": {
            "selector": {"app": decl.name},
            "ports": [
                {"name": "grpc", "port": decl.grpc_port, "targetPort": "grpc", "appProtocol": "grpc"},
                {
                    "name": "http-metrics",
                    "port": decl.metrics_port,
                    "targetPort": "http-metrics",
                    "appProtocol": "http",
                },
            ],
        },
    }


def disruption_budget(cluster: Cluster, name: str) -> Object:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _meta(cluster, name),
        "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": name}}},
    }


def autoscaler(cluster: Cluster, name: str) -> Object:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _meta(cluster, name),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": 2,
            "maxReplicas": 6,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}},
                }
            ],
        },
    }


def callers_of(cluster: Cluster, service: str) -> set[str]:
    """Every identity the declaration lets call some method of `service` (health and reflection: the front door)."""
    decl = cluster.mesh.service(service)
    found = set(cluster.mesh.front_door)
    for method in decl.methods.values():
        found |= allow_matrix(cluster, method)
    return found


def callees_of(cluster: Cluster, identity: str) -> list[str]:
    return [name for name in cluster.mesh.services if identity in callers_of(cluster, name)]


def _pods(*apps: str) -> list[Object]:
    return [{"podSelector": {"matchLabels": {"app": app}}} for app in sorted(apps)]


def _dns() -> Object:
    return {
        "to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}}],
        "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
    }


def _istiod() -> Object:
    return {
        "to": [
            {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ISTIOD["namespace"]}},
                "podSelector": {"matchLabels": ISTIOD["labels"]},
            }
        ],
        "ports": [{"protocol": "TCP", "port": port} for port in ISTIOD["ports"]],
    }


def _to_services(cluster: Cluster, callees: list[str]) -> list[Object]:
    return [
        {"to": _pods(callee), "ports": [{"protocol": "TCP", "port": cluster.mesh.service(callee).grpc_port}]}
        for callee in callees
    ]


def _metrics_scrapers(port: int) -> Object:
    # Prometheus runs in a namespace labelled for it (see k8s/README.md).
    return {
        "from": [{"namespaceSelector": {"matchLabels": {"shopmesh.io/metrics": "scrape"}}}],
        "ports": [{"protocol": "TCP", "port": port}],
    }


def network_policy(cluster: Cluster, decl: ServiceDecl) -> Object:
    egress = [
        _dns(),
        _istiod(),
        *_to_services(cluster, callees_of(cluster, decl.name)),
        # The JWKS through the edge (RequestAuthentication, fetched by this pod's sidecar).
        {"to": _pods(EDGE), "ports": [{"protocol": "TCP", "port": EDGE_PORT}]},
        {
            "to": [
                {
                    "podSelector": {
                        "matchLabels": {"strimzi.io/cluster": KAFKA_CLUSTER, "strimzi.io/broker-role": "true"}
                    }
                }
            ],
            "ports": [{"protocol": "TCP", "port": KAFKA_TLS_PORT}],
        },
    ]
    if decl.storage is not None:
        # PostgreSQL and MongoDB are outside the cluster (k8s/README.md): any address, their port only.
        egress.append({"ports": [{"protocol": "TCP", "port": DATABASE_PORTS[decl.storage.kind.value]}]})
    if decl.name == "payments":
        egress.append({"ports": [{"protocol": "TCP", "port": STRIPE_HTTPS_PORT}]})
    if decl.name == "notifications":
        egress.append({"ports": [{"protocol": "TCP", "port": SMTP_SUBMISSION_PORT}]})
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _meta(cluster, decl.name),
        "spec": {
            "podSelector": {"matchLabels": {"app": decl.name}},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [
                {
                    "from": _pods(*callers_of(cluster, decl.name)),
                    "ports": [{"protocol": "TCP", "port": decl.grpc_port}],
                },
                _metrics_scrapers(decl.metrics_port),
            ],
            "egress": egress,
        },
    }


def edge_network_policy(cluster: Cluster) -> Object:
    gateway = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": INGRESS_GATEWAY_NAMESPACE}},
        "podSelector": {"matchLabels": INGRESS_GATEWAY_SELECTOR},
    }
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _meta(cluster, EDGE),
        "spec": {
            "podSelector": {"matchLabels": {"app": EDGE}},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [
                {"from": [gateway], "ports": [{"protocol": "TCP", "port": EDGE_PORT}]},
                # Every sidecar fetches the JWKS through the edge.
                {"from": _pods(*cluster.mesh.services, EDGE), "ports": [{"protocol": "TCP", "port": EDGE_PORT}]},
            ],
            "egress": [_dns(), _istiod(), *_to_services(cluster, callees_of(cluster, EDGE))],
        },
    }


def default_deny_network(cluster: Cluster) -> Object:
    """Nothing in or out of a shopmesh workload unless a policy above allows it."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "default-deny", "namespace": cluster.namespace, "labels": dict(PART_OF)},
        "spec": {"podSelector": {"matchLabels": dict(PART_OF)}, "policyTypes": ["Ingress", "Egress"]},
    }


def migration_job(cluster: Cluster, decl: ServiceDecl) -> Object:
    pod_security, container_security = _security_context()
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _meta(cluster, f"{decl.name}-migrate", app=f"{decl.name}-migrate"),
        "spec": {
            "backoffLimit": 3,
            "ttlSecondsAfterFinished": 3600,
            "template": {
                "metadata": {
                    "labels": labels(f"{decl.name}-migrate"),
                    # A Job ends; an injected sidecar would keep its pod running. It talks only to its database.
                    "annotations": {"sidecar.istio.io/inject": "false"},
                },
                "spec": {
                    "restartPolicy": "OnFailure",
                    "automountServiceAccountToken": False,
                    "securityContext": pod_security,
                    "containers": [
                        {
                            "name": "migrate",
                            "image": SERVICE_IMAGE,
                            "command": ["python", "-m", "shopmesh_platform.migrations", decl.name],
                            "env": [_secret_env("SHOPMESH_DATABASE_URL", f"{decl.name}-database", "url")],
                            "resources": {
                                "requests": {"cpu": "50m", "memory": "64Mi"},
                                "limits": {"cpu": "500m", "memory": "256Mi"},
                            },
                            "securityContext": container_security,
                        }
                    ],
                },
            },
        },
    }


def migration_network_policy(cluster: Cluster, decl: ServiceDecl) -> Object:
    name = f"{decl.name}-migrate"
    port = DATABASE_PORTS[StorageKind.POSTGRES.value]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _meta(cluster, name),
        "spec": {
            "podSelector": {"matchLabels": {"app": name}},
            "policyTypes": ["Ingress", "Egress"],
            "egress": [_dns(), {"ports": [{"protocol": "TCP", "port": port}]}],
        },
    }


def edge_objects(cluster: Cluster, envoy_yaml: str, descriptor: bytes) -> list[Object]:
    pod_security, container_security = _security_context()
    config = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(cluster, "edge-config", app=EDGE),
        "data": {"envoy.yaml": envoy_yaml},
        "binaryData": {EDGE_DESCRIPTOR_FILE: base64.b64encode(descriptor).decode()},
    }
    probe = {"httpGet": {"path": "/healthz", "port": EDGE_PORT}, "periodSeconds": 5}
    container = {
        "name": EDGE,
        "image": EDGE_IMAGE,
        "imagePullPolicy": "IfNotPresent",
        "args": ["-c", f"{EDGE_CONFIG}/envoy.yaml", "--log-level", "info", "--drain-time-s", str(DRAIN_GRACE_SECONDS)],
        "ports": [{"name": "http2-edge", "containerPort": EDGE_PORT, "protocol": "TCP"}],
        "readinessProbe": probe,
        "livenessProbe": {**probe, "periodSeconds": 10, "failureThreshold": 3},
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "1", "memory": "512Mi"}},
        "securityContext": container_security,
        "volumeMounts": [
            {"name": "config", "mountPath": EDGE_CONFIG, "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }
    deployment_object = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(cluster, EDGE),
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": EDGE}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {"labels": labels(EDGE)},
                "spec": {
                    "serviceAccountName": EDGE,
                    "automountServiceAccountToken": False,
                    "terminationGracePeriodSeconds": TERMINATION_GRACE_SECONDS,
                    "securityContext": pod_security,
                    "containers": [container],
                    "volumes": [
                        {"name": "config", "configMap": {"name": "edge-config"}},
                        {"name": "tmp", "emptyDir": {"sizeLimit": "16Mi"}},
                    ],
                },
            },
        },
    }
    edge_service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(cluster, EDGE),
        "spec": {
            "selector": {"app": EDGE},
            # REST (HTTP/1.1 from clients) and gRPC both reach Envoy as HTTP/2 from the gateway.
            "ports": [{"name": "http2-edge", "port": EDGE_PORT, "targetPort": "http2-edge", "appProtocol": "http2"}],
        },
    }
    return [
        service_account(cluster, EDGE),
        config,
        deployment_object,
        edge_service,
        disruption_budget(cluster, EDGE),
        autoscaler(cluster, EDGE),
        edge_network_policy(cluster),
    ]


def service_objects(cluster: Cluster, decl: ServiceDecl) -> list[Object]:
    objects = [
        service_account(cluster, decl.name),
        settings(cluster, decl),
        deployment(cluster, decl),
        service(cluster, decl),
        disruption_budget(cluster, decl.name),
        autoscaler(cluster, decl.name),
        network_policy(cluster, decl),
    ]
    if decl.storage is not None and decl.storage.kind is StorageKind.POSTGRES:
        objects += [migration_job(cluster, decl), migration_network_policy(cluster, decl)]
    return objects
