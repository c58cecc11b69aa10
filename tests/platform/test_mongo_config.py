"""A MongoDB service's database is the one its mesh.yaml `storage` declares."""

from __future__ import annotations

import pytest

from shopmesh_platform.config import ConfigError
from shopmesh_platform.mesh import StorageDecl, StorageKind, load_mesh
from shopmesh_platform.mongo import MongoConfig

URL = {"SHOPMESH_MONGODB_URL": "mongodb://127.0.0.1:27017/"}


def declared_storage(kind: StorageKind) -> StorageDecl:
    storages = [s.storage for s in load_mesh().services.values() if s.storage is not None]
    return next(storage for storage in storages if storage.kind is kind)


def test_the_database_defaults_to_the_declared_one_and_the_variable_overrides_it() -> None:
    storage = declared_storage(StorageKind.MONGO)
    assert MongoConfig.from_env(URL, storage).database == storage.database
    assert MongoConfig.from_env({**URL, "SHOPMESH_MONGODB_DATABASE": "elsewhere"}, storage).database == "elsewhere"


def test_without_a_declaration_the_database_must_be_named() -> None:
    with pytest.raises(ConfigError, match="SHOPMESH_MONGODB_DATABASE must be set"):
        MongoConfig.from_env(URL)
    assert MongoConfig.from_env({**URL, "SHOPMESH_MONGODB_DATABASE": "named"}).database == "named"


def test_a_service_declared_on_postgres_gets_no_mongo_config() -> None:
    with pytest.raises(ConfigError, match="declared storage is postgres, not mongo"):
        MongoConfig.from_env(URL, declared_storage(StorageKind.POSTGRES))
