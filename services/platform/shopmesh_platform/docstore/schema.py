"""Create the docstore's indexes at start; idempotent (an existing identical index is left alone).

One index per `createIndexes` command: FerretDB 1.24 drops the connection
(a server-side panic) when one command re-creates several existing indexes.
"""

from __future__ import annotations

from typing import Protocol

from pymongo import IndexModel
from pymongo.asynchronous.collection import AsyncCollection

from shopmesh_platform.docstore.records import Document


class Indexed(Protocol):
    @property
    def collection(self) -> AsyncCollection[Document]: ...

    def indexes(self) -> list[IndexModel]: ...


async def ensure_indexes(*parts: Indexed) -> None:
    """Create the indexes each part declares on its collection (and the collection itself)."""
    for part in parts:
        for model in part.indexes():
            await part.collection.create_indexes([model])
