"""What every store holds about one chaos run, read in one pass: the auditor's evidence.

The run's customers (and the orders of theirs) scope every read, so a stack shared
with other tests audits only what this run did. Sources: the orders' transition log
(FerretDB), the payments, inventory, notifications and users databases (PostgreSQL),
localstripe's API and Mailpit's API. Nothing here judges; `audit` does.
"""

from __future__ import annotations

import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
from pymongo import AsyncMongoClient

from shopmesh_inventory.ledger_check import verify_ledger
from shopmesh_inventory.records import LedgerMismatch
from shopmesh_stack.stack import Stack

PAGE = 100


@dataclass(frozen=True)
class Step:
    """One transition of an order: its status after it, its event and what caused it."""

    version: int
    status: str
    reason: str
    event_id: str
    event_type: str
    cause: str


@dataclass(frozen=True)
class OrderFacts:
    id: str
    user_id: str
    lines: tuple[tuple[str, int], ...]
    total_minor: int
    steps: tuple[Step, ...]

    @property
    def status(self) -> str:
        return self.steps[-1].status

    @property
    def reason(self) -> str:
        return self.steps[-1].reason

    @property
    def was_confirmed(self) -> bool:
        return any(step.status == "CONFIRMED" for step in self.steps)


@dataclass(frozen=True)
class Event:
    id: str
    type: str  # the short name, e.g. PaymentFailed
    aggregate: str


@dataclass
class Evidence:
    orders: dict[str, OrderFacts] = field(default_factory=dict)
    payments: dict[str, list[asyncpg.Record]] = field(default_factory=lambda: defaultdict(list))
    refunds: dict[str, list[asyncpg.Record]] = field(default_factory=lambda: defaultdict(list))
    cancelled_orders: set[str] = field(default_factory=set)
    payment_events: list[Event] = field(default_factory=list)
    user_events: list[Event] = field(default_factory=list)
    # database -> event ids its consumers recorded in their inbox
    inboxes: dict[str, set[str]] = field(default_factory=dict)
    ledger_by_order: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    products: dict[str, asyncpg.Record] = field(default_factory=dict)
    ledger_mismatches: tuple[LedgerMismatch, ...] = ()
    notifications: Counter[str] = field(default_factory=Counter)
    mails: dict[str, asyncpg.Record] = field(default_factory=dict)
    mailpit: Counter[str] = field(default_factory=Counter)
    intents: list[dict[str, Any]] = field(default_factory=list)
    stripe_refunds: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))


def _short(event_type: str) -> str:
    return event_type.rsplit(".", 1)[-1]


class StoreReader:
    """Reads the evidence of the run whose customers are `user_ids` and products `product_ids`."""

    def __init__(self, stack: Stack, user_ids: set[str], emails: set[str], product_ids: set[str]) -> None:
        self._stack = stack
        self._users = user_ids
        self._emails = emails
        self._products = product_ids

    def _database(self, service: str) -> str:
        storage = self._stack.settings.mesh.service(service).storage
        assert storage is not None
        return storage.database

    def _dsn(self, service: str) -> str:
        return self._stack.postgres.dsn(self._database(service))

    async def read(self) -> Evidence:
        evidence = Evidence()
        await self._orders(evidence)
        order_ids = list(evidence.orders)
        await self._payments(evidence, order_ids)
        await self._inventory(evidence, order_ids)
        await self._users_events(evidence)
        await self._notifications(evidence)
        await self._localstripe(evidence)
        await self._mailpit(evidence)
        return evidence

    async def _orders(self, evidence: Evidence) -> None:
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
            self._stack.ferretdb.url, serverSelectionTimeoutMS=5000
        )
        try:
            collection = client.get_database(self._database("orders")).get_collection("orders_transitions")
            steps: dict[str, list[tuple[int, dict[str, Any]]]] = defaultdict(list)
            async for document in collection.find({"state.user_id": {"$in": sorted(self._users)}}):
                steps[document["aggregate"]].append((int(document["version"]), document))
        finally:
            await client.close()
        for order_id, versions in steps.items():
            versions.sort(key=lambda pair: pair[0])
            state = versions[-1][1]["state"]
            evidence.orders[order_id] = OrderFacts(
                id=order_id,
                user_id=state["user_id"],
                lines=tuple((item["product_id"], int(item["quantity"])) for item in state["items"]),
                total_minor=int(state["total_minor"]),
                steps=tuple(
                    Step(
                        version=version,
                        status=document["state"]["status"],
                        reason=document["state"].get("cancellation_reason") or "",
                        event_id=document["event"]["event_id"],
                        event_type=_short(document["event"]["type"]),
                        cause=document.get("cause") or "",
                    )
                    for version, document in versions
                ),
            )

    async def _payments(self, evidence: Evidence, order_ids: list[str]) -> None:
        ids = [uuid.UUID(order_id) for order_id in order_ids]
        connection = await asyncpg.connect(self._dsn("payments"), timeout=10)
        try:
            for row in await connection.fetch("SELECT * FROM payments WHERE order_id = ANY($1::uuid[])", ids):
                evidence.payments[str(row["order_id"])].append(row)
            for row in await connection.fetch(
                """SELECT r.*, p.order_id FROM refunds r JOIN payments p ON p.id = r.payment_id
                   WHERE p.order_id = ANY($1::uuid[])""",
                ids,
            ):
                evidence.refunds[str(row["order_id"])].append(row)
            rows = await connection.fetch("SELECT order_id FROM cancelled_orders WHERE order_id = ANY($1::uuid[])", ids)
            evidence.cancelled_orders = {str(row["order_id"]) for row in rows}
            rows = await connection.fetch(
                "SELECT event_id, event_type, aggregate_id FROM outbox WHERE aggregate_id = ANY($1::text[])",
                order_ids,
            )
            evidence.payment_events = [
                Event(str(row["event_id"]), _short(row["event_type"]), row["aggregate_id"]) for row in rows
            ]
            evidence.inboxes["payments"] = await _inbox(connection)
        finally:
            await connection.close()

    async def _inventory(self, evidence: Evidence, order_ids: list[str]) -> None:
        connection = await asyncpg.connect(self._dsn("inventory"), timeout=10)
        try:
            rows = await connection.fetch(
                "SELECT order_id, kind FROM stock_ledger WHERE order_id = ANY($1::uuid[])",
                [uuid.UUID(order_id) for order_id in order_ids],
            )
            for row in rows:
                evidence.ledger_by_order[str(row["order_id"])][row["kind"]] += 1
            rows = await connection.fetch("SELECT * FROM products WHERE id = ANY($1::text[])", sorted(self._products))
            evidence.products = {row["id"]: row for row in rows}
            evidence.ledger_mismatches = (await verify_ledger(connection)).mismatches
            evidence.inboxes["inventory"] = await _inbox(connection)
        finally:
            await connection.close()

    async def _users_events(self, evidence: Evidence) -> None:
        connection = await asyncpg.connect(self._dsn("users"), timeout=10)
        try:
            rows = await connection.fetch(
                "SELECT event_id, event_type, aggregate_id FROM outbox WHERE aggregate_id = ANY($1::text[])",
                sorted(self._users),
            )
        finally:
            await connection.close()
        evidence.user_events = [
            Event(str(row["event_id"]), _short(row["event_type"]), row["aggregate_id"]) for row in rows
        ]

    async def _notifications(self, evidence: Evidence) -> None:
        users = [uuid.UUID(user_id) for user_id in self._users]
        connection = await asyncpg.connect(self._dsn("notifications"), timeout=10)
        try:
            rows = await connection.fetch(
                "SELECT source_event_id FROM notifications WHERE user_id = ANY($1::uuid[])", users
            )
            evidence.notifications = Counter(str(row["source_event_id"]) for row in rows)
            rows = await connection.fetch("SELECT * FROM outgoing_mails WHERE user_id = ANY($1::uuid[])", users)
            evidence.mails = {str(row["source_event_id"]): row for row in rows}
            evidence.inboxes["notifications"] = await _inbox(connection)
        finally:
            await connection.close()

    async def _localstripe(self, evidence: Evidence) -> None:
        localstripe = self._stack.localstripe
        headers = {"Authorization": f"Bearer {localstripe.api_key}"}
        # localstripe rewrites its whole store on every write: after a long run a list page can take long.
        async with httpx.AsyncClient(base_url=localstripe.api_base, headers=headers, timeout=120) as client:
            intents = await _stripe_list(client, "/v1/payment_intents")
            evidence.intents = [i for i in intents if (i.get("metadata") or {}).get("user_id") in self._users]
            ours = {intent["id"] for intent in evidence.intents}
            for refund in await _stripe_list(client, "/v1/refunds"):
                if refund.get("payment_intent") in ours:
                    evidence.stripe_refunds[refund["payment_intent"]].append(refund)

    async def _mailpit(self, evidence: Evidence) -> None:
        async with httpx.AsyncClient(base_url=self._stack.mailpit.ui_url, timeout=30) as client:
            start = 0
            while True:
                page = (await client.get("/api/v1/messages", params={"start": start, "limit": 1000})).json()
                messages = page.get("messages") or []
                for message in messages:
                    if any(to.get("Address") in self._emails for to in message.get("To") or []):
                        evidence.mailpit[message["MessageID"]] += 1
                start += len(messages)
                if not messages or start >= int(page.get("messages_count", page.get("total", 0))):
                    return


async def _inbox(connection: asyncpg.Connection) -> set[str]:
    return {str(row["event_id"]) for row in await connection.fetch("SELECT event_id FROM processed_events")}


async def _stripe_list(client: httpx.AsyncClient, path: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": PAGE}
    while True:
        response = await client.get(path, params=params)
        response.raise_for_status()
        page = response.json()
        found += page["data"]
        if not page.get("has_more") or not page["data"]:
            return found
        params["starting_after"] = page["data"][-1]["id"]
