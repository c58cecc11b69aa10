"""What the stack gives each service, derived from its mesh declaration.

Its database comes from `storage` (a PostgreSQL database of the stack's cluster,
or a database on FerretDB), its ports and the other services' addresses from the
instance's `Ports`, its files from a directory of its own. Nothing here names a
service: adding one to mesh/mesh.yaml is enough for the stack to provision it.
"""

from __future__ import annotations

from collections.abc import Callable

from shopmesh_platform.config import ConfigError
from shopmesh_platform.mesh import MeshDeclaration, ServiceDecl, StorageKind

# The PostgreSQL database FerretDB keeps its (MongoDB-wire) databases in.
FERRETDB_DATABASE = "ferretdb"
# Databases of the cluster itself that no service may claim.
RESERVED_DATABASES = frozenset({"postgres", "template0", "template1", FERRETDB_DATABASE})


def postgres_databases(mesh: MeshDeclaration) -> dict[str, str]:
    """Service -> its PostgreSQL database, for the services whose storage is PostgreSQL.

    Each service has its own: two services declaring one database, or one of the
    cluster's own, is an error naming them.
    """
    owners: dict[str, str] = {}
    for decl in mesh.services.values():
        if decl.storage is None or decl.storage.kind is not StorageKind.POSTGRES:
            continue
        database = decl.storage.database
        if database in RESERVED_DATABASES:
            raise ConfigError(f"services.{decl.name}.storage.database: {database!r} is the stack's own")
        if database in owners:
            raise ConfigError(
                f"services.{decl.name}.storage.database: {database!r} is already {owners[database]}'s database"
            )
        owners[database] = decl.name
    return {service: database for database, service in owners.items()}


def storage_env(decl: ServiceDecl, *, postgres_dsn: Callable[[str], str], mongo_url: str) -> dict[str, str]:
    """The variables that point a service at its declared database (none without storage)."""
    if decl.storage is None:
        return {}
    if decl.storage.kind is StorageKind.POSTGRES:
        return {"SHOPMESH_DATABASE_URL": postgres_dsn(decl.storage.database)}
    return {"SHOPMESH_MONGODB_URL": mongo_url, "SHOPMESH_MONGODB_DATABASE": decl.storage.database}


def address_variable(service: str) -> str:
    """Where the platform reads another service's address (PlatformConfig.address_of)."""
    return f"SHOPMESH_ADDRESS_{service.upper()}"
