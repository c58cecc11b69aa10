"""A small SQL migration runner: `migrations/<source>/NNNN_name.sql`, in order, once.

A service database gets two sources: `platform` (the tables the shared runtime
relies on: outbox, processed events) and then the service's own. Each file runs
in its own transaction and is recorded in `schema_migrations` by source and
version with a checksum; a recorded file whose content changed is an error
(migrations are append-only). An advisory lock keeps two runners from racing.
We write this rather than use a migration tool (alembic, yoyo) because those
need SQLAlchemy or a sync driver; plain ordered SQL files on asyncpg are 60 lines.

`python -m shopmesh_platform.migrations <service>` applies them to the database
named by SHOPMESH_DATABASE_URL (the cluster's migration Jobs run it).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from shopmesh_platform.config import ConfigError, EnvReader

MIGRATIONS_ROOT = Path(__file__).resolve().parents[3] / "migrations"
_FILE_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
_LOCK_KEY = 0x5D0_3E54  # arbitrary, constant: "the migration lock"


class MigrationError(RuntimeError):
    """A migration failed or the recorded history does not match the files."""


PLATFORM_SOURCE = "platform"


@dataclass(frozen=True)
class Migration:
    source: str
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def discover(source: str, root: Path = MIGRATIONS_ROOT) -> list[Migration]:
    """One source's migrations in version order; misnamed files are an error."""
    directory = root / source
    if not directory.is_dir():
        raise MigrationError(f"no migrations directory {directory}")
    found = []
    for path in sorted(directory.iterdir()):
        if path.suffix != ".sql":
            continue
        match = _FILE_NAME.match(path.name)
        if not match:
            raise MigrationError(f"{path.name}: migration files are named NNNN_lower_snake.sql")
        found.append(Migration(source, int(match.group(1)), path.name, path.read_text()))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"{directory}: duplicate migration versions")
    return found


def service_migrations(service: str, root: Path = MIGRATIONS_ROOT, *, required: bool = True) -> list[Migration]:
    """`service`'s own migrations; with `required=False` a service without a directory has none.

    The cluster's migration Jobs require one (a missing directory there is a wrong
    name); the local stack does not, so a service added only to a mesh declaration
    gets the platform's tables and creates nothing else.
    """
    if not required and not (root / service).exists():
        return []
    return discover(service, root)


async def migrate(dsn: str, service: str, root: Path = MIGRATIONS_ROOT, *, own_required: bool = True) -> list[str]:
    """Apply the pending platform and `service` migrations; returns `source/name` of each applied."""
    migrations = discover(PLATFORM_SOURCE, root) + service_migrations(service, root, required=own_required)
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
        await connection.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   source text NOT NULL,
                   version integer NOT NULL,
                   name text NOT NULL,
                   checksum text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now(),
                   PRIMARY KEY (source, version))"""
        )
        applied = {(r["source"], r["version"]): r for r in await connection.fetch("SELECT * FROM schema_migrations")}
        done: list[str] = []
        for migration in migrations:
            label = f"{migration.source}/{migration.name}"
            record = applied.get((migration.source, migration.version))
            if record is not None:
                if record["checksum"] != migration.checksum:
                    raise MigrationError(f"{label} changed after it was applied")
                continue
            try:
                async with connection.transaction():
                    await connection.execute(migration.sql)
                    await connection.execute(
                        "INSERT INTO schema_migrations (source, version, name, checksum) VALUES ($1, $2, $3, $4)",
                        migration.source,
                        migration.version,
                        migration.name,
                        migration.checksum,
                    )
            except asyncpg.PostgresError as exc:
                raise MigrationError(f"{label}: {exc}") from exc
            done.append(label)
        return done
    finally:
        await connection.close()


def main(argv: list[str]) -> int:
    """Apply `argv[1]`'s migrations to SHOPMESH_DATABASE_URL; exit 2 on a usage or config error."""
    if len(argv) != 2:
        print("usage: python -m shopmesh_platform.migrations <service>", file=sys.stderr)
        return 2
    try:
        dsn = EnvReader(os.environ).optional("SHOPMESH_DATABASE_URL")
        if dsn is None:
            raise ConfigError("SHOPMESH_DATABASE_URL must name the service's PostgreSQL database")
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    for label in asyncio.run(migrate(dsn, argv[1])):
        print(f"applied {label}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
