"""`make dlq`: inspect and redrive dead-lettered messages and parked outbox rows.

    dlq list [TOPIC...]                       dead letters per topic, with their error headers
    dlq redrive TOPIC [--event-id ID...]      publish them (all, or those ids) to the original topic
    dlq parked [SERVICE...]                   outbox rows the relay parked, per PostgreSQL service
    dlq unpark SERVICE [--id N...]            offer them (all, or those row ids) to the relay again

Kafka and PostgreSQL are the stack's (ports from SHOPMESH_PORT_*), or
`--bootstrap` / `--database-url`. No payloads are printed: they may hold
personal data.
"""

from __future__ import annotations

import argparse
import asyncio

from shopmesh_platform.events.dlq import read_dead_letters, redrive
from shopmesh_platform.events.outbox import PostgresOutboxStore
from shopmesh_platform.events.topics import DLQ_SUFFIX, TopicCatalog
from shopmesh_platform.kafka import KafkaConfig
from shopmesh_stack.settings import StackSettings
from shopmesh_stack.wiring import postgres_databases


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    dlq = sub.add_parser("dlq", help="dead-lettered messages and parked outbox rows: list, redrive, unpark")
    dlq.add_argument("--bootstrap", help="Kafka bootstrap servers (default: the stack's)")
    dlq.add_argument("--database-url", help="the service database (default: the stack's, as mesh.yaml declares it)")
    actions = dlq.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="dead letters per topic with their error headers")
    listing.add_argument("topics", nargs="*", metavar="TOPIC")
    again = actions.add_parser("redrive", help="publish dead letters to their original topic again")
    again.add_argument("topic", metavar="TOPIC")
    again.add_argument("--event-id", action="append", dest="event_ids", help="only this event (repeatable)")
    parked = actions.add_parser("parked", help="outbox rows the relay parked")
    parked.add_argument("services", nargs="*", metavar="SERVICE")
    unpark = actions.add_parser("unpark", help="offer parked outbox rows to the relay again")
    unpark.add_argument("service", metavar="SERVICE")
    unpark.add_argument("--id", action="append", type=int, dest="ids", help="only this row id (repeatable)")


def run(args: argparse.Namespace, settings: StackSettings) -> int:
    return asyncio.run(_run(args, settings))


async def _run(args: argparse.Namespace, settings: StackSettings) -> int:
    kafka = KafkaConfig(args.bootstrap or f"127.0.0.1:{settings.ports.kafka}", 10_000)
    databases = postgres_databases(settings.mesh)

    def store(service: str) -> PostgresOutboxStore:
        if args.database_url is None and service not in databases:
            known = ", ".join(databases)
            raise SystemExit(f"dlq: {service!r} is not a PostgreSQL service of the mesh (one of: {known})")
        dsn = args.database_url or f"postgresql://postgres@127.0.0.1:{settings.ports.postgres}/{databases[service]}"
        return PostgresOutboxStore(dsn, service)

    if args.action == "list":
        topics = args.topics or TopicCatalog.load().base_topics()
        for topic in topics:
            letters = await read_dead_letters(kafka, topic)
            print(f"{topic}{DLQ_SUFFIX}: {len(letters)} message(s)")
            for letter in letters:
                print(
                    f"  p{letter.partition}@{letter.offset} event-id={letter.event_id} type={letter.event_type} "
                    f"from={letter.original_topic}[{letter.original_partition}]@{letter.original_offset} "
                    f"group={letter.group} attempts={letter.attempts} error={letter.error_type}: {letter.error}"
                )
    elif args.action == "redrive":
        sent = await redrive(kafka, args.topic, set(args.event_ids) if args.event_ids else None)
        for letter in sent:
            print(f"redriven event-id={letter.event_id} to {letter.original_topic}")
        print(f"{len(sent)} message(s) redriven")
    elif args.action == "parked":
        for service in args.services or databases:
            rows = await store(service).parked()
            print(f"{service}: {len(rows)} parked row(s)")
            for row in rows:
                print(
                    f"  id={row.position} event-id={row.event_id} type={row.event_type} topic={row.topic} "
                    f"attempts={row.attempts} parked_at={row.parked_at.isoformat()} error={row.last_error}"
                )
    elif args.action == "unpark":
        count = await store(args.service).unpark(args.ids)
        print(f"{args.service}: {count} row(s) unparked")
    return 0
