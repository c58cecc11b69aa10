"""The auditor: the checkout's invariants over the evidence of every store, and the ledger table.

Each invariant yields the ids that break it (none: it holds). After the load and
the last recovery the auditor reads again and again, until every invariant holds
or its deadline passes; orders must all be final within `FINAL_WITHIN_SECONDS` of
the last recovery whatever else is still settling.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from shopmesh_chaos.load import PAYMENT_SUCCEEDED, Catalog, Checkout
from shopmesh_chaos.stores import Evidence, OrderFacts, StoreReader

FINAL_WITHIN_SECONDS = 30.0
FINAL_STATUSES = frozenset({"CONFIRMED", "CANCELLED", "SHIPPED", "DELIVERED"})
PAID_STATUSES = frozenset({"CONFIRMED", "SHIPPED", "DELIVERED"})
# The events notifications turns into a notification, and those it also mails.
NOTIFIED = frozenset(
    {
        "UserRegistered",
        "OrderCreated",
        "OrderConfirmed",
        "OrderCancelled",
        "OrderStatusChanged",
        "PaymentFailed",
        "PaymentRefunded",
    }
)
MAILED = frozenset({"UserRegistered", "OrderConfirmed", "OrderCancelled", "PaymentRefunded"})
MAIL_DOMAIN = "notifications.shopmesh"
POLL_SECONDS = 1.0
SHOWN_IDS = 10


@dataclass(frozen=True)
class Finding:
    """One invariant and the ids that break it."""

    invariant: str
    offending: tuple[str, ...]

    @property
    def holds(self) -> bool:
        return not self.offending

    def describe(self) -> str:
        if self.holds:
            return f"  ok    {self.invariant}"
        shown = ", ".join(self.offending[:SHOWN_IDS]) + (" ..." if len(self.offending) > SHOWN_IDS else "")
        return f"  FAIL  {self.invariant}: {len(self.offending)}: {shown}"


def _succeeded_intents(evidence: Evidence, order_id: str) -> list[str]:
    return [
        intent["id"]
        for intent in evidence.intents
        if intent["metadata"].get("order_id") == order_id and intent["status"] == "succeeded"
    ]


def _stripe_refunds(evidence: Evidence, order_id: str) -> list[dict[str, object]]:
    return [
        refund
        for intent in evidence.intents
        if intent["metadata"].get("order_id") == order_id
        for refund in evidence.stripe_refunds.get(intent["id"], [])
    ]


def _events(evidence: Evidence) -> list[tuple[str, str]]:
    """(event id, short type) of every event of the run: user, order and payment events."""
    found = [(e.id, e.type) for e in evidence.user_events]
    found += [(step.event_id, step.event_type) for order in evidence.orders.values() for step in order.steps]
    found += [(e.id, e.type) for e in evidence.payment_events]
    return found


def _ledger_expected(order: OrderFacts) -> Counter[str]:
    if order.status in PAID_STATUSES:
        return Counter({"reserve": 1, "commit": 1})
    if order.was_confirmed:
        return Counter({"reserve": 1, "commit": 1, "return": 1})
    return Counter({"reserve": 1, "release": 1})


def findings(evidence: Evidence, catalog: Catalog, checkouts: Sequence[Checkout]) -> list[Finding]:
    orders = evidence.orders
    result: list[Finding] = []

    def check(invariant: str, offending: Sequence[str]) -> None:
        result.append(Finding(invariant, tuple(sorted(set(offending)))))

    check("every order is final", [o.id for o in orders.values() if o.status not in FINAL_STATUSES])
    check(
        "every CONFIRMED order has exactly one succeeded PaymentIntent and no refund",
        [
            o.id
            for o in orders.values()
            if o.status in PAID_STATUSES
            and (
                len(_succeeded_intents(evidence, o.id)) != 1
                or _stripe_refunds(evidence, o.id)
                or evidence.refunds[o.id]
            )
        ],
    )
    cancelled = [o for o in orders.values() if o.status == "CANCELLED"]
    check(
        "every cancelled paid order has exactly one refund (at Stripe and in payments, full amount)",
        [
            o.id
            for o in cancelled
            if _succeeded_intents(evidence, o.id)
            and (
                len(_stripe_refunds(evidence, o.id)) != 1
                or [(r["status"], r["amount_minor"]) for r in evidence.refunds[o.id]] != [("succeeded", o.total_minor)]
            )
        ],
    )
    check(
        "no refund of an order that was never paid",
        [o.id for o in cancelled if not _succeeded_intents(evidence, o.id) and _stripe_refunds(evidence, o.id)],
    )
    per_order = Counter(intent["metadata"].get("order_id") for intent in evidence.intents)
    recorded = {row["stripe_payment_intent_id"] for rows in evidence.payments.values() for row in rows}
    check(
        "no PaymentIntent without an order (and one per order, recorded by payments)",
        [
            intent["id"]
            for intent in evidence.intents
            if intent["metadata"].get("order_id") not in orders
            or per_order[intent["metadata"].get("order_id")] != 1
            or intent["id"] not in recorded
        ],
    )
    committed: Counter[str] = Counter()
    for order in orders.values():
        if order.status in PAID_STATUSES:
            for product_id, quantity in order.lines:
                committed[product_id] += quantity
    mismatched = {m.product_id for m in evidence.ledger_mismatches}
    check(
        "every product's stock equals its ledger and the initial stock minus committed units",
        [
            product_id
            for product_id, initial in catalog.initial_stock.items()
            if product_id in mismatched
            or product_id not in evidence.products
            or evidence.products[product_id]["on_hand"] != initial - committed[product_id]
            or evidence.products[product_id]["reserved"] != 0
        ]
        + sorted(mismatched),
    )
    check(
        "inventory applied each order's stock effects once (ledger vs. inbox)",
        [
            o.id
            for o in orders.values()
            if o.status in FINAL_STATUSES
            and (
                evidence.ledger_by_order.get(o.id, Counter()) != _ledger_expected(o)
                or any(
                    step.event_id not in evidence.inboxes["inventory"]
                    for step in o.steps
                    if step.event_type in ("OrderConfirmed", "OrderCancelled")
                )
            )
        ],
    )
    check(
        "payments recorded each cancellation once (cancelled_orders vs. inbox)",
        [
            o.id
            for o in cancelled
            if o.id not in evidence.cancelled_orders
            or any(
                step.event_id not in evidence.inboxes["payments"]
                for step in o.steps
                if step.event_type == "OrderCancelled"
            )
        ],
    )
    check(
        "orders applied each payment event once (unique causes, one confirmation or cancellation per order)",
        [
            o.id
            for o in orders.values()
            if len({s.cause for s in o.steps}) != len(o.steps)
            or sum(s.status == "CONFIRMED" for s in o.steps) > 1
            or sum(s.status == "CANCELLED" for s in o.steps) > 1
        ],
    )
    events = _events(evidence)
    notified = {event_id for event_id, kind in events if kind in NOTIFIED}
    check(
        "one notification per event",
        [e for e in notified if evidence.notifications[e] != 1]
        + [e for e in evidence.notifications if e not in notified],
    )
    mailed = {event_id for event_id, kind in events if kind in MAILED}
    check(
        "one mail per mail-worthy event, sent (outgoing_mails)",
        [e for e in mailed if e not in evidence.mails or evidence.mails[e]["sent_at"] is None]
        + [e for e in evidence.mails if e not in mailed],
    )
    expected_ids = {f"{e}@{MAIL_DOMAIN}" for e in mailed}
    check(
        "one distinct Message-ID per mail-worthy event (Mailpit)",
        sorted(expected_ids ^ set(evidence.mailpit)),
    )
    check(
        "what the client was told holds (its orders exist, acknowledged payments and cancellations stand)",
        [
            f"#{c.number}:{c.order_id}"
            for c in checkouts
            if c.order_id is not None
            and (
                c.order_id not in orders
                or (c.payment_status == PAYMENT_SUCCEEDED and not _succeeded_intents(evidence, c.order_id))
                or (c.cancelled_acknowledged and orders[c.order_id].status != "CANCELLED")
            )
        ]
        + [f"#{c.number}: {'; '.join(c.disagreements)}" for c in checkouts if c.disagreements],
    )
    return result


def ledger_table(evidence: Evidence, catalog: Catalog) -> str:
    orders = evidence.orders
    committed: Counter[str] = Counter()
    for order in orders.values():
        if order.status in PAID_STATUSES:
            for product_id, quantity in order.lines:
                committed[product_id] += quantity
    lines = [
        f"{'product':<32} {'initial':>8} {'committed':>9} {'expected':>8} {'on_hand':>8} {'reserved':>8}",
    ]
    for product_id, initial in sorted(catalog.initial_stock.items()):
        row = evidence.products.get(product_id)
        on_hand, reserved = (row["on_hand"], row["reserved"]) if row else ("-", "-")
        lines.append(
            f"{product_id:<32} {initial:>8} {committed[product_id]:>9} {initial - committed[product_id]:>8} "
            f"{on_hand!s:>8} {reserved!s:>8}"
        )
    by_status = Counter(f"{o.status}{'/' + o.reason if o.reason else ''}" for o in orders.values())
    payments = Counter(row["status"] for rows in evidence.payments.values() for row in rows)
    intents = Counter(intent["status"] for intent in evidence.intents)
    refunds = sum(len(r) for r in evidence.stripe_refunds.values())
    events = _events(evidence)
    repeats = sum(n - 1 for n in evidence.mailpit.values())
    lines += [
        "",
        f"orders        {len(orders)}: " + ", ".join(f"{k} {n}" for k, n in sorted(by_status.items())),
        "payments      " + ", ".join(f"{k} {n}" for k, n in sorted(payments.items())),
        "stripe        PaymentIntents "
        + ", ".join(f"{k} {n}" for k, n in sorted(intents.items()))
        + f"; refunds {refunds}",
        f"events        {len(events)} ({len(evidence.user_events)} user, "
        f"{sum(len(o.steps) for o in orders.values())} order, {len(evidence.payment_events)} payment)",
        f"notifications {sum(evidence.notifications.values())}; mails queued {len(evidence.mails)}, "
        f"in Mailpit {len(evidence.mailpit)} distinct Message-IDs ({repeats} repeated deliveries)",
    ]
    return "\n".join(lines)


@dataclass(frozen=True)
class AuditResult:
    evidence: Evidence
    findings: list[Finding]
    # Seconds after the last recovery until every order was final (None: never within the deadline).
    final_after: float | None

    @property
    def passed(self) -> bool:
        return all(f.holds for f in self.findings)


async def audit(
    reader: StoreReader,
    catalog: Catalog,
    checkouts: Sequence[Checkout],
    *,
    last_recovery: float,
    settle_seconds: float,
    clock: Callable[[], float] = time.monotonic,
) -> AuditResult:
    """Read until every invariant holds or `settle_seconds` after `last_recovery` (clock time) passed."""
    final_after: float | None = None
    while True:
        try:
            evidence = await reader.read()
        except Exception as error:
            # A store still recovering (e.g. localstripe answering 500 while it reloads): read again.
            if clock() > last_recovery + settle_seconds:
                raise
            print(f"chaos: reading the stores failed ({type(error).__name__}: {error}); reading again", flush=True)
            await asyncio.sleep(POLL_SECONDS)
            continue
        found = findings(evidence, catalog, checkouts)
        now = clock()
        if final_after is None and all(o.status in FINAL_STATUSES for o in evidence.orders.values()):
            final_after = max(now - last_recovery, 0.0)
        if all(f.holds for f in found) or now > last_recovery + settle_seconds:
            break
        await asyncio.sleep(POLL_SECONDS)
    late = final_after is None or final_after > FINAL_WITHIN_SECONDS
    found.insert(
        0,
        Finding(
            f"every order final within {FINAL_WITHIN_SECONDS:.0f}s of the last recovery"
            + ("" if final_after is None else f" (took {final_after:.1f}s)"),
            tuple(sorted(o.id for o in evidence.orders.values() if o.status not in FINAL_STATUSES)) or ("late",)
            if late
            else (),
        ),
    )
    return AuditResult(evidence, found, final_after)
