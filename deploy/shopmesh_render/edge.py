"""The edge Envoy's config for the cluster, from the local edge renderer.

`shopmesh_edge.render.render` builds the config for the local stack (loopback
addresses, static clusters, mTLS with file certificates). On the cluster the
same routes, filters and policies apply; only the surroundings differ, and
this module changes exactly those on the rendered config:

- the listeners bind 0.0.0.0 (the ingress gateway reaches the edge listener
  through the sidecar; the kubelet and Prometheus reach the metrics listener's
  GET /ready and GET /stats/prometheus);
- the production profile: no health or reflection routes at the edge;
- each service cluster resolves `<service>.<namespace>.svc.cluster.local`
  (STRICT_DNS) and speaks plaintext h2c to the local sidecar, which does mTLS
  (EdgeSettings.upstream_tls=None: no certificate files in the pod);
- the access log goes to stdout, the descriptor set comes from the ConfigMap.

The admin interface (a Unix socket in the pod) and the JWKS cluster (the edge
itself) stay local.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shopmesh_edge.policy import EdgePolicy
from shopmesh_edge.render import ADMIN_CLUSTER, JWKS_CLUSTER, EdgeSettings, render
from shopmesh_render.cluster import EDGE_PORT, JWT_AUDIENCE, JWT_ISSUER, Cluster
from shopmesh_render.kube import EDGE_ADMIN_PORT, EDGE_CONFIG, EDGE_DESCRIPTOR_FILE

# Envoy's admin interface in the pod (an emptyDir-backed /tmp): owner-only, never on the network.
EDGE_ADMIN_SOCKET = "/tmp/envoy-admin.sock"


class EdgeShapeError(RuntimeError):
    """The local edge config no longer has the shape this adapter rewrites."""


def _only(items: list[dict[str, Any]], what: str) -> dict[str, Any]:
    if len(items) != 1:
        raise EdgeShapeError(f"expected one {what} in the edge config, found {len(items)}")
    return items[0]


def cluster_edge_config(cluster: Cluster, policy: EdgePolicy) -> dict[str, Any]:
    mesh = cluster.mesh
    settings = EdgeSettings(
        listen_port=EDGE_PORT,
        metrics_port=EDGE_ADMIN_PORT,
        admin_socket=Path(EDGE_ADMIN_SOCKET),
        profile="production",
        upstream_ports={name: decl.grpc_port for name, decl in mesh.services.items()},
        descriptor=Path(EDGE_CONFIG) / EDGE_DESCRIPTOR_FILE,
        access_log=Path("/dev/stdout"),
        policy=policy,
        jwt_issuer=JWT_ISSUER,
        jwt_audience=JWT_AUDIENCE,
        upstream_tls=None,
    )
    config = render(mesh, settings)
    resources = config["static_resources"]
    if len(resources["listeners"]) != 2:
        raise EdgeShapeError(f"expected the edge and metrics listeners, found {len(resources['listeners'])}")
    for listener in resources["listeners"]:
        listener["address"]["socket_address"]["address"] = "0.0.0.0"
    for definition in resources["clusters"]:
        if definition["name"] in (JWKS_CLUSTER, ADMIN_CLUSTER):
            continue
        if definition["name"] not in mesh.services:
            raise EdgeShapeError(f"unexpected edge cluster {definition['name']!r}")
        if "transport_socket" in definition:
            raise EdgeShapeError(f"cluster {definition['name']} would do TLS itself; the sidecar does mTLS")
        definition["type"] = "STRICT_DNS"
        definition["dns_lookup_family"] = "V4_PREFERRED"
        endpoint = _only(definition["load_assignment"]["endpoints"], "endpoint group")
        address = _only(endpoint["lb_endpoints"], "endpoint")["endpoint"]["address"]["socket_address"]
        address["address"] = cluster.host(definition["name"])
    return config
