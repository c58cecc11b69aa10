"""The stack's GIN indexes under FerretDB (scripts/shopmesh_stack/document_indexes.py):
every index a service declares is usable by the filters FerretDB pushes down."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import asyncpg
from pymongo import ASCENDING, MongoClient
from pymongo.collection import Collection

from shopmesh_stack.document_indexes import gin_index_name
from shopmesh_stack.stack import Stack
from shopmesh_stack.wiring import FERRETDB_DATABASE


async def _tables(stack: Stack, database: str) -> dict[str, str]:
    connection = await asyncpg.connect(stack.postgres.dsn(FERRETDB_DATABASE))
    try:
        rows = await connection.fetch(
            f"SELECT _jsonb->>'_id' AS collection, _jsonb->>'table' AS table_name "
            f'FROM "{database}"._ferretdb_database_metadata'
        )
    finally:
        await connection.close()
    return {row["collection"]: row["table_name"] for row in rows}


async def _plan(stack: Stack, database: str, table: str, field: str, value: Any) -> str:
    """PostgreSQL's plan for the filter FerretDB 1.24 pushes down for `{field: value}`, sequential scans off."""
    connection = await asyncpg.connect(stack.postgres.dsn(FERRETDB_DATABASE))
    try:
        async with connection.transaction():
            await connection.execute("SET LOCAL enable_seqscan = off")
            rows = await connection.fetch(
                f'EXPLAIN SELECT _jsonb FROM "{database}"."{table}" WHERE _jsonb->$1 @> $2::jsonb',
                field,
                json.dumps(value),
            )
    finally:
        await connection.close()
    return "\n".join(row[0] for row in rows)


async def test_every_declared_index_of_orders_serves_pushed_down_lookups(stack: Stack) -> None:
    storage = stack.settings.mesh.service("orders").storage
    assert storage is not None
    database = storage.database
    tables = await _tables(stack, database)
    client: MongoClient[dict[str, Any]]
    with MongoClient(stack.ferretdb.url) as client:
        declared = {
            collection: [next(iter(index["key"])) for index in client[database][collection].list_indexes()]
            for collection in client[database].list_collection_names()
        }
    assert "_id" in declared["orders_transitions"]
    checked = 0
    for collection, first_keys in declared.items():
        for field in first_keys:
            if "." in field:
                continue
            plan = await _plan(stack, database, tables[collection], field, "probe")
            assert gin_index_name(tables[collection], field) in plan, f"{collection}.{field}:\n{plan}"
            checked += 1
    assert checked >= 5


async def test_a_new_declaration_is_indexed_once_and_dotted_keys_are_left_alone(stack: Stack) -> None:
    database = f"gin_probe_{uuid.uuid4().hex[:8]}"
    client: MongoClient[dict[str, Any]]
    with MongoClient(stack.ferretdb.url) as client:
        collection: Collection[dict[str, Any]] = client[database]["things"]
        collection.create_index([("owner", ASCENDING), ("made_at", ASCENDING)], name="owner_made")
        collection.create_index([("detail.kind", ASCENDING)], name="detail_kind")
        collection.insert_one({"_id": "a", "owner": "o-1", "detail": {"kind": "k"}})
        try:
            added = await asyncio.to_thread(stack.ferretdb.serve_declared_indexes, database)
            assert sorted(added) == ["things._id", "things.owner"]
            assert await asyncio.to_thread(stack.ferretdb.serve_declared_indexes, database) == []
            table = (await _tables(stack, database))["things"]
            assert gin_index_name(table, "owner") in await _plan(stack, database, table, "owner", "o-1")
            # FerretDB still answers through it, and knows only its own indexes.
            assert collection.find_one({"owner": "o-1"}) == {"_id": "a", "owner": "o-1", "detail": {"kind": "k"}}
            assert sorted(index["name"] for index in collection.list_indexes()) == ["_id_", "detail_kind", "owner_made"]
        finally:
            client.drop_database(database)
