"""Rolling restarts under load: every service's process is replaced in turn (`Stack.roll`,
what `make roll` runs: successor first on the same ports, then SIGTERM to the old one)
while a steady load runs through the edge, and no client call fails.

The load is REST through Envoy: reads of every service, the idempotent writes
MarkNotificationRead and CancelOrder, and CreateOrder with a request id, whose
reservation is a call from orders to inventory (a service-to-service channel
that must survive inventory's hand-over too). Every reply is checked, not only
its status. Afterwards each old process has drained (its server logged
`stopped`) and exited by itself (with 0, where its status reaches us), and each
successor is the service's process and has answered calls.

CreateOrder is not declared idempotent (its request id is optional), so the edge
does not repeat it once the service may have received it. A call racing the
old process's shutdown can be cancelled before the service saw it (503); the
client then does what the contract says, sends it again with the same request
id, and must get the same order. Those resends are counted and printed; a
CreateOrder that still fails is a failed call.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from shopmesh_stack.admin_socket import admin_get
from shopmesh_stack.procs import _start_time
from shopmesh_stack.stack import Handover, Stack
from tests.declared import SERVICES
from tests.integration.helpers import HttpReply, http
from tests.integration.inventory_client import admin_account, create_product
from tests.integration.orders_client import ADDRESS
from tests.integration.users_client import Account, register
from tests.polling import eventually, wait_for

PRICE = 3.5
# Calls the load keeps in flight at once (each worker runs one after the other).
WORKERS = 3
# Calls after the last hand-over, so the last successor is seen serving too.
CALLS_AFTER = 30


@dataclass
class Load:
    """What the workers did: every call by name, the failed ones with what went wrong."""

    calls: dict[str, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    # CreateOrder requests sent again with their request id (see the module docstring).
    resends: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def total(self) -> int:
        with self.lock:
            return sum(self.calls.values())

    def record(self, name: str, problem: str | None) -> None:
        with self.lock:
            self.calls[name] = self.calls.get(name, 0) + 1
            if problem is not None:
                self.failures.append(f"{time.strftime('%H:%M:%S')} {name}: {problem}")


@dataclass(frozen=True)
class Shop:
    """What the load reads and writes: one customer's order, payment and notification, one product."""

    account: Account
    product: str
    order: str
    payment: str
    notification: str


Check = Callable[[HttpReply], str | None]


def ok(expect: Callable[[Any], bool]) -> Check:
    def check(reply: HttpReply) -> str | None:
        if reply.status != 200:
            return f"HTTP {reply.status}: {reply.body[:300]!r}"
        return None if expect(reply.json()) else f"unexpected body {reply.body[:300]!r}"

    return check


def calls(stack: Stack, shop: Shop, load: Load) -> list[tuple[str, Callable[[], str | None]]]:
    """The mix, one call per service method the load exercises, in the order a worker repeats them."""
    me = shop.account.bearer

    def get(path: str, check: Check, headers: dict[str, str] | None = None) -> Callable[[], str | None]:
        return lambda: check(http(stack, "GET", path, headers=headers))

    def checkout() -> str | None:
        # CreateOrder (orders -> inventory ReserveStock), then CancelOrder: its stock comes back.
        body = {
            "userId": shop.account.id,
            "items": [{"productId": shop.product, "quantity": 1, "price": PRICE}],
            "shippingAddress": ADDRESS,
            "requestId": str(uuid.uuid4()),
        }
        created = http(stack, "POST", "/api/v1/orders", json.dumps(body), me)
        if created.status == 503:
            with load.lock:
                load.resends += 1
            created = http(stack, "POST", "/api/v1/orders", json.dumps(body), me)
        if (problem := ok(lambda o: o["status"] == "ORDER_STATUS_PENDING")(created)) is not None:
            return f"CreateOrder: {problem}"
        order_id = created.json()["id"]
        cancelled = http(stack, "POST", f"/api/v1/orders/{order_id}:cancel", "{}", me)
        problem = ok(lambda o: o["id"] == order_id and o["status"] == "ORDER_STATUS_CANCELLED")(cancelled)
        return None if problem is None else f"CancelOrder: {problem}"

    return [
        ("inventory.GetProduct", get(f"/api/v1/products/{shop.product}", ok(lambda p: p["id"] == shop.product))),
        ("inventory.ListProducts", get("/api/v1/products?pageSize=3", ok(lambda r: len(r["products"]) == 3))),
        ("users.GetMe", get("/api/v1/users/me", ok(lambda u: u["id"] == shop.account.id), me)),
        ("orders.GetOrder", get(f"/api/v1/orders/{shop.order}", ok(lambda o: o["id"] == shop.order), me)),
        ("orders.ListOrders", get("/api/v1/orders?pageSize=5", ok(lambda r: bool(r["orders"])), me)),
        ("payments.GetPayment", get(f"/api/v1/payments/{shop.payment}", ok(lambda p: p["id"] == shop.payment), me)),
        (
            "notifications.ListNotifications",
            get("/api/v1/notifications?pageSize=10", ok(lambda r: bool(r["notifications"])), me),
        ),
        (
            "notifications.MarkNotificationRead",
            lambda: ok(lambda n: n["id"] == shop.notification and bool(n["readAt"]))(
                http(stack, "POST", f"/api/v1/notifications/{shop.notification}:markRead", "{}", me)
            ),
        ),
        ("orders.CreateOrder+CancelOrder", checkout),
    ]


def prepare_shop(stack: Stack) -> Shop:
    admin = admin_account(stack)
    product = create_product(stack, admin, stock=10_000, price=PRICE)
    assert product.status == 200, product.body
    product_id = product.json()["id"]
    account = register(stack)
    body = {
        "userId": account.id,
        "items": [{"productId": product_id, "quantity": 1, "price": PRICE}],
        "shippingAddress": ADDRESS,
        "requestId": str(uuid.uuid4()),
    }
    order = http(stack, "POST", "/api/v1/orders", json.dumps(body), account.bearer)
    assert order.status == 200, order.body
    order_id = order.json()["id"]
    payment_body = {"orderId": order_id, "amount": PRICE, "currency": "USD", "paymentMethodId": "pm_card_visa"}
    payment = http(stack, "POST", "/api/v1/payments", json.dumps(payment_body), account.bearer)
    assert payment.status == 200, payment.body
    welcome = asyncio.run(
        eventually(
            lambda: asyncio.to_thread(http, stack, "GET", "/api/v1/notifications?pageSize=10", None, account.bearer),
            lambda reply: reply.status == 200 and bool(reply.json().get("notifications")),
            timeout=60,
        )
    )
    notification = welcome.json()["notifications"][-1]["id"]
    return Shop(account, product_id, order_id, payment.json()["paymentId"], notification)


def run_load(mix: list[tuple[str, Callable[[], str | None]]], load: Load, stop: threading.Event, offset: int) -> None:
    position = offset
    while not stop.is_set():
        name, call = mix[position % len(mix)]
        position += 1
        try:
            problem = call()
        except Exception as exc:  # a timeout or a dropped connection is a failed call too
            problem = f"{type(exc).__name__}: {exc}"
        load.record(name, problem)


def drained(stack: Stack, service: str) -> int:
    """How many of the service's processes have logged the end of their drain (the log is shared)."""
    log = stack.services[service].process.spec.log_file
    ends = 0
    for line in log.read_text().splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            ends += entry.get("logger") == "shopmesh.server" and entry.get("message") == "stopped"
    return ends


def handled_calls(stack: Stack, service: str) -> float:
    """The gRPC calls the process on the service's metrics port has handled."""
    with urllib.request.urlopen(f"http://127.0.0.1:{stack.settings.ports.metrics(service)}/metrics", timeout=5) as r:
        lines = r.read().decode().splitlines()
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith("grpc_server_handled_total{"))


@pytest.mark.stops_components
@pytest.mark.timeout(300)
def test_every_service_is_replaced_under_load_without_a_failed_call(stack: Stack) -> None:
    shop = prepare_shop(stack)
    load, stop = Load(), threading.Event()
    mix = calls(stack, shop, load)
    before = {name: stack.services[name].process.pid() for name in SERVICES}
    workers = [
        threading.Thread(target=run_load, args=(mix, load, stop, offset * 3), name=f"load-{offset}", daemon=True)
        for offset in range(WORKERS)
    ]
    for worker in workers:
        worker.start()
    handovers: list[Handover] = []
    try:
        wait_for(lambda: load.total >= len(mix), 60, "the load running")
        for name in SERVICES:
            at_start, drained_before = load.total, drained(stack, name)
            handovers.append(stack.roll(name))
            # The load ran through the hand-over (not just before and after it).
            assert load.total > at_start, f"no call completed while {name} was replaced"
            assert drained(stack, name) == drained_before + 1, f"{name}'s old server did not log its drain"
        after = load.total
        wait_for(lambda: load.total >= after + CALLS_AFTER, 60, "calls after the last hand-over")
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=30)

    retries = admin_get(stack.edge.admin_socket, "/stats?filter=upstream_rq_retry$")[1].split()
    print(f"calls: {load.total} {dict(sorted(load.calls.items()))}; CreateOrder resent: {load.resends}")
    print(f"edge retries: {' '.join(retries)}")
    assert not load.failures, f"{len(load.failures)} of {load.total} calls failed:\n" + "\n".join(load.failures[:20])
    assert set(load.calls) == {name for name, _ in mix}
    for handover in handovers:
        name = handover.service
        assert handover.old.pid == before[name]
        # Exited by itself after SIGTERM (never killed); its status, when it reaches us, is 0.
        assert handover.old.in_time and handover.old.code in (0, None), handover
        assert _start_time(handover.old.pid) is None, f"{name}'s old process {handover.old.pid} still runs"
        assert stack.services[name].process.pid() == handover.new_pid != handover.old.pid
        # The metrics port is the successor's alone now, and it has answered calls.
        assert handled_calls(stack, name) > 0, name
