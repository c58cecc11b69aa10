"""The services of the repository's mesh declaration, for tests that list or parametrize over them.

Derived from mesh/mesh.yaml, never written out: a service added there is covered
by these tests without touching them.
"""

from __future__ import annotations

from shopmesh_platform.mesh import StorageKind, load_mesh
from shopmesh_stack.settings import service_order

MESH = load_mesh()
# In start order (mesh.yaml order).
SERVICES = service_order(MESH)
POSTGRES_SERVICES = tuple(
    name for name in SERVICES if (storage := MESH.service(name).storage) and storage.kind is StorageKind.POSTGRES
)
