"""The chaos harness's pure parts: the seeded fault schedule, and the auditor catching what it must.

The auditor runs on evidence built here (no stack): one consistent checkout of each
kind holds every invariant, and each planted inconsistency is reported with its id.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections import Counter
from typing import Any

from shopmesh_chaos.audit import findings
from shopmesh_chaos.faults import pick, schedule
from shopmesh_chaos.load import Catalog, Checkout, Customer
from shopmesh_chaos.stores import Event, Evidence, OrderFacts, Step

COMPONENTS = ["postgres", "kafka", "ferretdb", "localstripe", "mailpit", "edge", "svc-a", "svc-b"]
PRODUCT = "prod-chaos-test"
INITIAL = 100


def test_the_schedule_is_the_seeds_and_faults_each_component_once_in_order() -> None:
    first = schedule(COMPONENTS, seed=7, within_seconds=48)
    assert first == schedule(COMPONENTS, seed=7, within_seconds=48)
    assert first != schedule(COMPONENTS, seed=8, within_seconds=48)
    assert sorted(f.component for f in first) == sorted(COMPONENTS)
    times = [f.at for f in first]
    assert times == sorted(times) and times[0] > 0 and times[-1] < 48
    assert all(2.0 <= f.down_for <= 4.0 for f in first)
    assert pick(COMPONENTS, 3, seed=1) == pick(COMPONENTS, 3, seed=1) and len(set(pick(COMPONENTS, 3, seed=1))) == 3


class World:
    """Evidence of consistent checkouts, built one order at a time."""

    def __init__(self) -> None:
        self.user = str(uuid.uuid4())
        self.evidence = Evidence()
        self.evidence.inboxes = {"inventory": set(), "payments": set(), "notifications": set()}
        self.evidence.user_events.append(self._event("UserRegistered", self.user))
        self.committed = 0

    def _event(self, kind: str, aggregate: str) -> Event:
        event = Event(str(uuid.uuid4()), kind, aggregate)
        self.evidence.notifications[event.id] += 1
        if kind in ("UserRegistered", "OrderConfirmed", "OrderCancelled", "PaymentRefunded"):
            self.evidence.mails[event.id] = {"sent_at": dt.datetime.now(dt.UTC)}
            self.evidence.mailpit[f"{event.id}@notifications.shopmesh"] += 1
        for inbox in self.evidence.inboxes.values():
            inbox.add(event.id)
        return event

    def order(self, statuses: list[str], *, paid: bool, quantity: int = 2) -> str:
        order_id = str(uuid.uuid4())
        kinds = {"PENDING": "OrderCreated", "CONFIRMED": "OrderConfirmed", "CANCELLED": "OrderCancelled"}
        steps = []
        for version, status in enumerate(statuses, start=1):
            event = self._event(kinds[status], order_id)
            steps.append(Step(version, status, "", event.id, event.type, f"cause-{event.id}"))
        self.evidence.orders[order_id] = OrderFacts(order_id, self.user, ((PRODUCT, quantity),), 2500, tuple(steps))
        ledger = Counter({"reserve": 1})
        if "CONFIRMED" in statuses:
            ledger["commit"] += 1
            if statuses[-1] == "CANCELLED":
                ledger["return"] += 1
            else:
                self.committed += quantity
        else:
            ledger["release"] += 1
        self.evidence.ledger_by_order[order_id] = ledger
        if statuses[-1] == "CANCELLED":
            self.evidence.cancelled_orders.add(order_id)
        if paid:
            intent = f"pi_{order_id[:8]}"
            self.evidence.intents.append({"id": intent, "status": "succeeded", "metadata": {"order_id": order_id}})
            self.evidence.payments[order_id].append({"stripe_payment_intent_id": intent})
            if statuses[-1] == "CANCELLED":
                self.evidence.stripe_refunds[intent].append({"id": f"re_{order_id[:8]}"})
                self.evidence.refunds[order_id].append({"status": "succeeded", "amount_minor": 2500})
                self.evidence.payment_events.append(self._event("PaymentRefunded", order_id))
        return order_id

    def stock(self, on_hand: int | None = None) -> None:
        row: Any = {"on_hand": INITIAL - self.committed if on_hand is None else on_hand, "reserved": 0}
        self.evidence.products = {PRODUCT: row}


def failing(world: World) -> dict[str, tuple[str, ...]]:
    found = findings(world.evidence, Catalog({PRODUCT: INITIAL}), [])
    return {f.invariant: f.offending for f in found if not f.holds}


def consistent_world() -> tuple[World, dict[str, str]]:
    world = World()
    ids = {
        "confirmed": world.order(["PENDING", "CONFIRMED"], paid=True),
        "declined": world.order(["PENDING", "CANCELLED"], paid=False),
        "cancelled_after_payment": world.order(["PENDING", "CONFIRMED", "CANCELLED"], paid=True),
    }
    world.stock()
    return world, ids


def test_consistent_checkouts_hold_every_invariant() -> None:
    world, _ = consistent_world()
    assert failing(world) == {}


def test_each_planted_inconsistency_is_reported_with_its_id() -> None:
    world, ids = consistent_world()
    world.order(["PENDING"], paid=False)  # never final
    second = {"id": "pi_twice", "status": "succeeded", "metadata": {"order_id": ids["confirmed"]}}
    world.evidence.intents.append(second)  # charged twice
    world.evidence.stripe_refunds[f"pi_{ids['cancelled_after_payment'][:8]}"].append({"id": "re_again"})
    world.evidence.intents.append({"id": "pi_orphan", "status": "succeeded", "metadata": {"order_id": "nope"}})
    world.stock(on_hand=INITIAL)  # the confirmed order's units never left the shelf
    world.evidence.ledger_by_order[ids["declined"]]["release"] += 1  # released twice
    lost_mail = next(iter(world.evidence.mailpit))
    del world.evidence.mailpit[lost_mail]
    failed = failing(world)

    def offending(invariant_start: str) -> tuple[str, ...]:
        [found] = [ids for invariant, ids in failed.items() if invariant.startswith(invariant_start)]
        return found

    assert len(offending("every order is final")) == 1
    assert ids["confirmed"] in offending("every CONFIRMED order")
    assert offending("every cancelled paid order") == (ids["cancelled_after_payment"],)
    assert {"pi_orphan", "pi_twice", f"pi_{ids['confirmed'][:8]}"} <= set(offending("no PaymentIntent without"))
    assert offending("every product's stock") == (PRODUCT,)
    assert ids["declined"] in offending("inventory applied")
    assert offending("one distinct Message-ID") == (lost_mail,)
    assert len(failed) == 7


def test_what_the_client_was_told_must_hold() -> None:
    world, ids = consistent_world()
    customer = Customer(world.user, "a@example.com", "token")
    told = Checkout(1, "cancel_before_payment", False, customer, str(uuid.uuid4()), PRODUCT, 1)
    told.order_id, told.cancelled_acknowledged = ids["confirmed"], True
    lost = Checkout(2, "paid", False, customer, str(uuid.uuid4()), PRODUCT, 1, order_id=str(uuid.uuid4()))
    found = findings(world.evidence, Catalog({PRODUCT: INITIAL}), [told, lost])
    [client] = [f for f in found if f.invariant.startswith("what the client")]
    assert client.offending == tuple(sorted([f"#1:{ids['confirmed']}", f"#2:{lost.order_id}"]))
