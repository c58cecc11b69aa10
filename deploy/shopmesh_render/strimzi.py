"""Kafka on Strimzi (`kafka.strimzi.io/v1`, Strimzi 1.x) from kafka/topics.yaml and the declaration.

A KRaft `Kafka` whose brokers and controllers are one `KafkaNodePool` of three,
a TLS listener with mutual-TLS authentication and `simple` authorization,
auto-creation off; one `KafkaTopic` per topic and per `.dlq` twin (replication
and min.insync.replicas of the topic declaration's `cluster` defaults); one
`KafkaUser` per service whose ACLs are exactly what it publishes (Write) and
consumes (Read), plus the `.dlq` twins of what it consumes (Write) and its own
consumer groups (the `<service>.` prefix of `consumer_group`, and `revocations-`). The Kafka pods run
without Istio sidecars: their listener does its own mutual TLS.
"""

from __future__ import annotations

from typing import Any

from shopmesh_platform.events.consumer import consumer_group
from shopmesh_platform.events.topics import TopicSpec
from shopmesh_platform.mesh import ServiceDecl
from shopmesh_render.cluster import KAFKA_CLUSTER, KAFKA_TLS_PORT, PART_OF, Cluster

API = "kafka.strimzi.io/v1"
NODE_POOL = "dual-role"
NODE_REPLICAS = 3
# The revocation deny-list reads user-events in a group of its own per process.
SHARED_GROUP_PREFIXES = ("revocations-",)
WRITE = ["Describe", "Write"]
READ = ["Describe", "Read"]

Object = dict[str, Any]


def _meta(cluster: Cluster, name: str) -> Object:
    return {"name": name, "namespace": cluster.namespace, "labels": {"strimzi.io/cluster": KAFKA_CLUSTER}}


def _no_sidecar() -> Object:
    return {"pod": {"metadata": {"annotations": {"sidecar.istio.io/inject": "false"}}}}


def kafka(cluster: Cluster, min_insync: int, replication: int) -> Object:
    return {
        "apiVersion": API,
        "kind": "Kafka",
        "metadata": {"name": KAFKA_CLUSTER, "namespace": cluster.namespace, "labels": dict(PART_OF)},
        "spec": {
            "kafka": {
                "listeners": [
                    {
                        "name": "tls",
                        "port": KAFKA_TLS_PORT,
                        "type": "internal",
                        "tls": True,
                        "authentication": {"type": "tls"},
                        # Only the mesh's workloads may open a connection (then the ACLs decide).
                        "networkPolicyPeers": [{"podSelector": {"matchLabels": dict(PART_OF)}}],
                    }
                ],
                "authorization": {"type": "simple"},
                "config": {
                    "auto.create.topics.enable": False,
                    "default.replication.factor": replication,
                    "min.insync.replicas": min_insync,
                    "offsets.topic.replication.factor": replication,
                    "transaction.state.log.replication.factor": replication,
                    "transaction.state.log.min.isr": min_insync,
                },
                "template": _no_sidecar(),
            },
            "entityOperator": {
                "topicOperator": {},
                "userOperator": {},
                "template": _no_sidecar(),
            },
        },
    }


def node_pool(cluster: Cluster) -> Object:
    return {
        "apiVersion": API,
        "kind": "KafkaNodePool",
        "metadata": _meta(cluster, NODE_POOL),
        "spec": {
            "replicas": NODE_REPLICAS,
            "roles": ["controller", "broker"],
            "storage": {
                "type": "jbod",
                "volumes": [
                    {
                        "id": 0,
                        "type": "persistent-claim",
                        "size": "100Gi",
                        "deleteClaim": False,
                        "kraftMetadata": "shared",
                    }
                ],
            },
            "resources": {"requests": {"cpu": "500m", "memory": "2Gi"}, "limits": {"cpu": "2", "memory": "4Gi"}},
            "template": _no_sidecar(),
        },
    }


def topic(cluster: Cluster, spec: TopicSpec) -> Object:
    return {
        "apiVersion": API,
        "kind": "KafkaTopic",
        "metadata": _meta(cluster, spec.name),
        "spec": {
            "topicName": spec.name,
            "partitions": spec.partitions,
            "replicas": spec.replication["cluster"],
            "config": {
                "retention.ms": spec.retention_ms(),
                "min.insync.replicas": spec.min_insync_replicas["cluster"],
            },
        },
    }


def _acl(kind: str, name: str, operations: list[str], pattern: str = "literal") -> Object:
    return {
        "type": "allow",
        "resource": {"type": kind, "name": name, "patternType": pattern},
        "operations": operations,
        "host": "*",
    }


def user(cluster: Cluster, decl: ServiceDecl) -> Object:
    acls = [_acl("topic", name, WRITE) for name in sorted(decl.publishes | decl.dead_letter_topics)]
    acls += [_acl("topic", name, READ) for name in sorted(decl.consumes)]
    if decl.consumes:
        # The runtime's consumers are in groups `<service>.<name>` (consumer_group).
        groups = (consumer_group(decl.name, ""), *SHARED_GROUP_PREFIXES)
        acls += [_acl("group", prefix, ["Read"], pattern="prefix") for prefix in groups]
    return {
        "apiVersion": API,
        "kind": "KafkaUser",
        "metadata": _meta(cluster, decl.name),
        "spec": {"authentication": {"type": "tls"}, "authorization": {"type": "simple", "acls": acls}},
    }


def render(cluster: Cluster, topics: list[TopicSpec]) -> dict[str, list[Object]]:
    """File name (under kafka/strimzi/) -> its objects."""
    base = topics[0]
    return {
        "kafka.yaml": [
            kafka(cluster, base.min_insync_replicas["cluster"], base.replication["cluster"]),
            node_pool(cluster),
        ],
        "topics.yaml": [topic(cluster, spec) for spec in topics],
        "users.yaml": [user(cluster, decl) for decl in cluster.mesh.services.values()],
    }
