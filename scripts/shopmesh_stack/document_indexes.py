"""PostgreSQL GIN indexes that let FerretDB v1 use the indexes a service declares.

FerretDB 1.24 turns a service's `create_indexes` into btree indexes on
`(_jsonb->'field')`, but it pushes an equality filter down to PostgreSQL as
`_jsonb->'field' @> value` (containment), which a btree index cannot serve: every
pushed-down lookup, `_id` included, is a sequential scan of the collection's
table (20 ms at 20,000 documents, growing with every order placed; 1.6 ms with a
GIN index on the same expression). MongoDB, which production runs, uses the
declared indexes; so that the local stand-in scales the same way, the stack adds
one GIN index on the first key of every index a service declared, once the
service is ready (it declares its indexes before it reports SERVING), and again
after every restart (idempotent). Dotted keys are skipped: FerretDB 1.24 does not
push filters on them down at all, so no index can help (the services query
top-level fields). FerretDB passes the field name as a query parameter; PostgreSQL
plans such a statement for its actual parameters (its generic plan, a sequential
scan, costs far more), so the expression index is used.

FerretDB knows nothing of these indexes and never needs to: they only change
PostgreSQL's plans. Dropping a collection drops its table and them with it.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import asyncpg
from pymongo import MongoClient

# FerretDB's per-database catalogue: one row per collection, `_jsonb` holding its table name.
METADATA_TABLE = "_ferretdb_database_metadata"
INDEX_SUFFIX = "shopmesh_gin"


def gin_index_name(table: str, field: str) -> str:
    """A name of its own per table and field, within PostgreSQL's 63 characters."""
    digest = hashlib.sha1(f"{table}\0{field}".encode()).hexdigest()[:10]
    return f"{table[:40]}_{digest}_{INDEX_SUFFIX}"


def declared_first_keys(mongo_url: str, database: str) -> dict[str, list[str]]:
    """Per collection of `database`, the top-level fields that lead one of its declared indexes."""
    client: MongoClient[dict[str, Any]]
    with MongoClient(mongo_url, serverSelectionTimeoutMS=5000) as client:
        keys: dict[str, list[str]] = {}
        for collection in client[database].list_collection_names():
            fields: list[str] = []
            for index in client[database][collection].list_indexes():
                first = next(iter(index["key"]))
                if "." not in first and first not in fields:
                    fields.append(first)
            keys[collection] = fields
        return keys


async def _create(postgres_dsn: str, database: str, keys: dict[str, list[str]]) -> list[str]:
    connection = await asyncpg.connect(postgres_dsn)
    try:
        rows = await connection.fetch(
            f"SELECT _jsonb->>'_id' AS collection, _jsonb->>'table' AS table_name "
            f"FROM {_identifier(database)}.{_identifier(METADATA_TABLE)}"
        )
        created = []
        for row in rows:
            for field in keys.get(row["collection"], []):
                name = gin_index_name(row["table_name"], field)
                exists = await connection.fetchval(
                    "SELECT 1 FROM pg_indexes WHERE schemaname = $1 AND indexname = $2", database, name
                )
                if exists:
                    continue
                await connection.execute(
                    f"CREATE INDEX IF NOT EXISTS {_identifier(name)} "
                    f"ON {_identifier(database)}.{_identifier(row['table_name'])} "
                    f"USING gin ((_jsonb -> {_literal(field)}))"
                )
                created.append(f"{row['collection']}.{field}")
        return created
    finally:
        await connection.close()


def serve_declared_indexes(mongo_url: str, postgres_dsn: str, database: str) -> list[str]:
    """Add the missing GIN indexes for `database`'s declared indexes; returns `collection.field` of each added."""
    keys = declared_first_keys(mongo_url, database)
    return asyncio.run(_create(postgres_dsn, database, keys))


def _identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
