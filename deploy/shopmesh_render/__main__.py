"""`python -m shopmesh_render [--check]`: write (or check) istio/, k8s/ and kafka/strimzi/.

The rendered files are committed. `--check` renders into memory and fails,
naming the files, if the committed ones differ (`make lint` runs it).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from shopmesh_edge.policy import load_edge_policy
from shopmesh_platform.events.topics import load_topic_specs
from shopmesh_platform.mesh import DEFAULT_MESH_FILE, load_mesh
from shopmesh_render import istio, kube, strimzi
from shopmesh_render.cluster import Cluster
from shopmesh_render.edge import cluster_edge_config
from shopmesh_render.routes import DESCRIPTOR_SET, rest_routes

REPO = Path(__file__).resolve().parents[2]
HEADER = (
    "# Rendered from mesh/mesh.yaml and kafka/topics.yaml by `make render` (deploy/shopmesh_render). Do not edit.\n"
)


class _Dumper(yaml.SafeDumper):
    """Block-style YAML; multi-line strings (the edge config) as literal blocks."""


def _string(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _string)


def dump(objects: Sequence[Mapping[str, Any]]) -> str:
    documents = [yaml.dump(dict(o), Dumper=_Dumper, sort_keys=False, width=120) for o in objects]
    return HEADER + "---\n".join(documents)


def kustomization(resources: list[str]) -> dict[str, Any]:
    return {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization", "resources": resources}


def render_all() -> dict[Path, str]:
    """Every rendered file (path relative to the repository) and its text."""
    mesh = load_mesh(DEFAULT_MESH_FILE)
    cluster = Cluster(mesh)
    routes = rest_routes(mesh)
    files: dict[Path, str] = {}

    istio_files = istio.render(cluster, routes)
    for name, objects in istio_files.items():
        files[Path("istio") / name] = dump(objects)
    files[Path("istio/kustomization.yaml")] = dump([kustomization(list(istio_files))])
    overlay = Path("istio/overlays/fault-users")
    files[overlay / "users-fault.yaml"] = dump([istio.fault_overlay(cluster)])
    files[overlay / "kustomization.yaml"] = dump(
        [{**kustomization(["../.."]), "patches": [{"path": "users-fault.yaml"}]}]
    )

    envoy = yaml.safe_dump(cluster_edge_config(cluster, load_edge_policy(DEFAULT_MESH_FILE)), sort_keys=False)
    k8s_files = {
        "namespace.yaml": [kube.namespace(cluster), kube.default_deny_network(cluster)],
        **{f"{name}.yaml": kube.service_objects(cluster, decl) for name, decl in mesh.services.items()},
        "edge.yaml": kube.edge_objects(cluster, envoy, DESCRIPTOR_SET.read_bytes()),
    }
    for name, objects in k8s_files.items():
        files[Path("k8s") / name] = dump(objects)
    files[Path("k8s/kustomization.yaml")] = dump([kustomization([*k8s_files, "../istio"])])

    strimzi_files = strimzi.render(cluster, load_topic_specs())
    for name, objects in strimzi_files.items():
        files[Path("kafka/strimzi") / name] = dump(objects)
    files[Path("kafka/strimzi/kustomization.yaml")] = dump([kustomization(list(strimzi_files))])
    return files


RENDERED_DIRS = (Path("istio"), Path("k8s"), Path("kafka/strimzi"))


def stale_files(root: Path, files: Mapping[Path, str]) -> list[str]:
    """Rendered files that differ from `root`'s, and rendered-looking files nobody renders any more."""
    problems = [
        str(path) for path, text in files.items() if not (root / path).is_file() or (root / path).read_text() != text
    ]
    for directory in RENDERED_DIRS:
        for path in sorted((root / directory).rglob("*.yaml")) if (root / directory).exists() else []:
            relative = path.relative_to(root)
            if relative not in files and path.read_text().startswith(HEADER):
                problems.append(f"{relative} (no longer rendered)")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="shopmesh_render", description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if the committed files differ")
    parser.add_argument("--root", type=Path, default=REPO, help="where istio/, k8s/ and kafka/strimzi/ live")
    args = parser.parse_args(argv)
    files = render_all()
    if args.check:
        stale = stale_files(args.root, files)
        if stale:
            print("render: out of date (run `make render`):\n  " + "\n  ".join(stale), file=sys.stderr)
            return 1
        print(f"render: {len(files)} files up to date")
        return 0
    for path, text in files.items():
        target = args.root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists() or target.read_text() != text:
            target.write_text(text)
    for problem in stale_files(args.root, files):
        print(f"render: remove {problem}", file=sys.stderr)
    print(f"render: wrote {len(files)} files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
