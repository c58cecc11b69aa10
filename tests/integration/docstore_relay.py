"""A Mongo outbox relay in its own process, so a test can SIGKILL it like a crashed service.

Usage: python -m tests.integration.docstore_relay MONGO_URL DATABASE KAFKA_BOOTSTRAP HOLDER LEASE_JSON
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from pymongo import AsyncMongoClient

from shopmesh_platform.docstore import LeaseTiming, MongoOutboxStore, MongoRelay, SlotLease, TransitionLog
from shopmesh_platform.kafka import KafkaConfig

SERVICE = "docstore-test"
LOG_NAME = "orders"


async def main(url: str, database_name: str, bootstrap: str, holder: str, timing: LeaseTiming) -> None:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(url, serverSelectionTimeoutMS=5000)
    database = client[database_name]
    log = TransitionLog(database, LOG_NAME)
    relay = MongoRelay(
        MongoOutboxStore(database, log, publisher=holder),
        SlotLease(database, SERVICE, holder=holder, timing=timing),
        KafkaConfig(bootstrap_servers=bootstrap, request_timeout_ms=10_000),
        poll_interval=0.05,
    )
    await relay.run()


if __name__ == "__main__":
    url, database_name, bootstrap, holder, timing = sys.argv[1:6]
    asyncio.run(main(url, database_name, bootstrap, holder, LeaseTiming(**json.loads(timing))))
