"""The REST routes of the edge, read from the protos' `google.api.http` rules.

The edge transcodes REST to gRPC with these rules (DESIGN §3: the mapping lives
in the proto, never in a renderer). On the cluster the ingress gateway and the
edge's sidecar see REST paths before transcoding, so the routes they match on
are derived here from the same descriptor set (`make gen`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from google.api import annotations_pb2
from google.protobuf import descriptor_pb2

from shopmesh_platform.mesh import MeshDeclaration, MethodDecl

DESCRIPTOR_SET = Path(__file__).resolve().parents[2] / "gen" / "descriptors" / "shopmesh.binpb"
HTTP_VERBS = ("get", "put", "post", "delete", "patch")
_VARIABLE = re.compile(r"\{[^}]*\}")


@dataclass(frozen=True)
class RestRoute:
    """One HTTP binding of a declared method."""

    method: MethodDecl
    verb: str
    template: str

    @property
    def regex(self) -> str:
        """An RE2 full-match regex for the template (a variable is one path segment)."""
        parts = _VARIABLE.split(self.template)
        return "[^/]+".join(re.escape(part).replace("\\/", "/") for part in parts)

    @property
    def authorization_path(self) -> str:
        """The template as an Istio AuthorizationPolicy path: exact, `prefix*` or `*suffix`.

        AuthorizationPolicy paths have no regexes. A route whose variable is its last
        segment becomes a prefix; one that ends in a literal (`/{id}:cancel`,
        `/{id}/status`) becomes a suffix. Both may match more than the template, so
        the tests check no public route falls under a `user` route's path.
        """
        variables = list(_VARIABLE.finditer(self.template))
        if not variables:
            return self.template
        if variables[-1].end() == len(self.template):
            return self.template[: variables[0].start()] + "*"
        return "*" + self.template[variables[-1].end() :]

    def example_path(self, value: str = "x1") -> str:
        return _VARIABLE.sub(value, self.template)


def rest_routes(mesh: MeshDeclaration, descriptor_set: Path = DESCRIPTOR_SET) -> list[RestRoute]:
    """Every HTTP binding of every declared method, in declaration order."""
    files = descriptor_pb2.FileDescriptorSet.FromString(descriptor_set.read_bytes())
    rules = {}
    for file in files.file:
        for service in file.service:
            for rpc in service.method:
                rules[f"/{file.package}.{service.name}/{rpc.name}"] = rpc.options.Extensions[annotations_pb2.http]
    found = []
    for method in mesh.all_methods():
        rule = rules.get(method.path)
        if rule is None:
            continue
        for binding in (rule, *rule.additional_bindings):
            verb = binding.WhichOneof("pattern")
            if verb in HTTP_VERBS:
                found.append(RestRoute(method, verb.upper(), getattr(binding, verb)))
    return found
