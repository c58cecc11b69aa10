"""The checkout load: customers and products of its own, and a seeded mix of checkouts at a fixed rate.

Each checkout places an order for one of the run's products and then, by its kind:
pays with a card that succeeds (`pm_card_visa`), pays with one that is declined
(`pm_card_chargeCustomerFail`), cancels before paying, or pays and then cancels.
A share of checkouts is duplicated: every request is sent twice at once with the
same request id, and both answers must name the same order and payment. A
customer runs one checkout at a time (so the cap on unpaid orders is not what
is tested). Checkouts start on a fixed schedule (open loop), whatever the
answers' latency, and each records what the client was told, for the audit.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from typing import Any

from shopmesh_chaos.client import EdgeClient, Reply

PASSWORD = "chaos horse battery staple"
ADDRESS = {"street": "1 Chaos Way", "city": "London", "state": "Greater London", "zipCode": "N1 7AA", "country": "GB"}
VISA = "pm_card_visa"
DECLINED = "pm_card_chargeCustomerFail"
# Kind -> weight of the mix.
MIX = {"paid": 45, "declined": 20, "cancel_before_payment": 15, "cancel_after_payment": 20}
DUPLICATED_SHARE = 0.25
PRODUCT_PRICE = 12.5
CONFIRMED = "ORDER_STATUS_CONFIRMED"
CANCELLED = "ORDER_STATUS_CANCELLED"
PAYMENT_SUCCEEDED = "PAYMENT_STATUS_SUCCEEDED"


class SetupError(RuntimeError):
    """The run's customers or products could not be made (before any fault: a plain failure)."""


@dataclass(frozen=True)
class Customer:
    id: str
    email: str
    token: str


@dataclass
class Checkout:
    """One checkout as the client saw it."""

    number: int
    kind: str
    duplicated: bool
    customer: Customer
    request_id: str
    product_id: str
    quantity: int
    order_id: str | None = None
    payment_id: str | None = None
    # What the client was told, for the audit: an acknowledged payment and cancellation must hold.
    payment_status: str | None = None
    cancelled_acknowledged: bool = False
    outcome: str = "started"
    disagreements: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Catalog:
    """The run's products (its own, so their stock is this run's alone) and their initial stock."""

    initial_stock: dict[str, int]


class CheckoutLoad:
    """Sets up customers and products, then runs checkouts at `rate` per second until told to stop."""

    def __init__(self, client: EdgeClient, *, seed: int, users_dsn: str, run_id: str) -> None:
        self._client = client
        self._random = random.Random(seed)
        self._users_dsn = users_dsn
        self._run_id = run_id
        self.customers: list[Customer] = []
        self.catalog = Catalog({})
        self.checkouts: list[Checkout] = []

    # Setup (before any fault)

    async def set_up(self, *, customers: int, products: int, stock: int) -> None:
        admin = await self._register(f"chaos-admin-{self._run_id}@example.com")
        await asyncio.to_thread(self._promote, admin.email)
        login = await self._client.call(
            "login", "POST", "/api/v1/users/login", {"email": admin.email, "password": PASSWORD}
        )
        if not login.ok:
            raise SetupError(f"admin login: {login.outcome}")
        admin_token = str(login.body["token"])
        initial = {}
        for index in range(products):
            product_id = f"prod-chaos-{self._run_id}-{index}"
            body = {
                "id": product_id,
                "name": f"Chaos item {index}",
                "price": PRODUCT_PRICE,
                "currency": "USD",
                "stock": stock,
                "category": "chaos",
            }
            created = await self._client.call("create_product", "POST", "/api/v1/products", body, admin_token)
            if not created.ok:
                raise SetupError(f"creating {product_id}: {created.outcome}")
            initial[product_id] = stock
        self.catalog = Catalog(initial)
        emails = [f"chaos-{self._run_id}-{n}@example.com" for n in range(customers)]
        # One at a time: password hashing is deliberately slow, and a burst of it only times out.
        self.customers = [await self._register(email) for email in emails]

    async def _register(self, email: str) -> Customer:
        body = {"email": email, "password": PASSWORD, "firstName": "Chaos", "lastName": "Monkey"}
        reply = await self._client.call("register", "POST", "/api/v1/users/register", body)
        if reply.status == 409:
            # An earlier attempt registered the account, but its answer was lost (a retry after a timeout).
            reply = await self._client.call(
                "login", "POST", "/api/v1/users/login", {"email": email, "password": PASSWORD}
            )
            if reply.ok:
                return Customer(reply.body["user"]["id"], email, reply.body["token"])
        if not reply.ok:
            raise SetupError(f"registering {email}: {reply.outcome}")
        return Customer(reply.body["user"]["id"], email, reply.body["token"])

    def _promote(self, email: str) -> None:
        promoted = subprocess.run(
            [sys.executable, "-m", "shopmesh_users.admin", "promote", email],
            env={**os.environ, "SHOPMESH_DATABASE_URL": self._users_dsn},
            capture_output=True,
            text=True,
            check=False,
        )
        if promoted.returncode != 0:
            raise SetupError(f"promoting the admin: {promoted.stderr.strip()}")

    # The load

    async def run(self, *, rate: float, stop: asyncio.Event) -> None:
        """Start a checkout every 1/rate seconds until `stop` is set, then wait for all of them to finish."""
        idle: asyncio.Queue[Customer] = asyncio.Queue()
        for customer in self.customers:
            idle.put_nowait(customer)
        running: set[asyncio.Task[None]] = set()
        interval = 1.0 / rate
        loop = asyncio.get_running_loop()
        next_start = loop.time()
        while not stop.is_set():
            customer = await idle.get()
            if stop.is_set():
                break
            checkout = self._new_checkout(customer)
            self.checkouts.append(checkout)
            task = asyncio.create_task(self._run_checkout(checkout, idle))
            running.add(task)
            task.add_done_callback(running.discard)
            next_start += interval
            # The schedule's pace (open loop): wait for the next start time or the stop, whichever comes first.
            if (delay := next_start - loop.time()) > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=delay)
        if running:
            await asyncio.gather(*running)

    def _new_checkout(self, customer: Customer) -> Checkout:
        kinds, weights = zip(*MIX.items(), strict=True)
        return Checkout(
            number=len(self.checkouts) + 1,
            kind=self._random.choices(kinds, weights)[0],
            duplicated=self._random.random() < DUPLICATED_SHARE,
            customer=customer,
            request_id=str(uuid.uuid4()),
            product_id=self._random.choice(sorted(self.catalog.initial_stock)),
            quantity=self._random.randint(1, 3),
        )

    async def _run_checkout(self, checkout: Checkout, idle: asyncio.Queue[Customer]) -> None:
        try:
            await self._checkout(checkout)
        finally:
            idle.put_nowait(checkout.customer)

    async def _twice_if_duplicated(
        self, checkout: Checkout, operation: str, method: str, path: str, body: Any
    ) -> list[Reply]:
        calls = 2 if checkout.duplicated else 1
        token = checkout.customer.token
        return list(
            await asyncio.gather(*(self._client.call(operation, method, path, body, token) for _ in range(calls)))
        )

    async def _checkout(self, checkout: Checkout) -> None:
        body = {
            "userId": checkout.customer.id,
            "requestId": checkout.request_id,
            "items": [{"productId": checkout.product_id, "quantity": checkout.quantity, "price": PRODUCT_PRICE}],
            "shippingAddress": ADDRESS,
        }
        placed = await self._twice_if_duplicated(checkout, "create_order", "POST", "/api/v1/orders", body)
        orders = {reply.body["id"] for reply in placed if reply.ok}
        if len(orders) > 1:
            checkout.disagreements.append(f"one request id, two orders: {sorted(orders)}")
        if not orders:
            checkout.outcome = f"order {placed[0].outcome}"
            return
        order = next(reply.body for reply in placed if reply.ok)
        checkout.order_id = order["id"]
        if checkout.kind == "cancel_before_payment":
            await self._cancel(checkout)
            return
        await self._pay(checkout, order, VISA if checkout.kind != "declined" else DECLINED)
        if checkout.kind == "cancel_after_payment":
            await self._cancel(checkout)

    async def _pay(self, checkout: Checkout, order: dict[str, Any], method: str) -> None:
        body = {
            "orderId": order["id"],
            "amount": order["totalAmount"],
            "currency": order.get("currency") or "USD",
            "paymentMethodId": method,
            "requestId": str(uuid.uuid5(uuid.UUID(checkout.request_id), "payment")),
        }
        paid = await self._twice_if_duplicated(checkout, "pay", "POST", "/api/v1/payments", body)
        payments = {reply.body["paymentId"] for reply in paid if reply.ok}
        if len(payments) > 1:
            checkout.disagreements.append(f"one request id, two payments: {sorted(payments)}")
        answered = [reply for reply in paid if reply.ok]
        if not answered:
            checkout.outcome = f"payment {paid[0].outcome}"
            return
        checkout.payment_id = answered[0].body["paymentId"]
        # The most settled answer is what the client was told.
        statuses = {str(reply.body.get("status")) for reply in answered}
        checkout.payment_status = PAYMENT_SUCCEEDED if PAYMENT_SUCCEEDED in statuses else sorted(statuses)[0]
        checkout.outcome = f"paid {checkout.payment_status}"

    async def _cancel(self, checkout: Checkout) -> None:
        path = f"/api/v1/orders/{checkout.order_id}:cancel"
        replies = await self._twice_if_duplicated(checkout, "cancel", "POST", path, {})
        cancelled = [reply for reply in replies if reply.ok]
        if any(reply.body.get("status") == CANCELLED for reply in cancelled):
            checkout.cancelled_acknowledged = True
            checkout.outcome = "cancelled"
        else:
            checkout.outcome = f"cancel {replies[0].outcome}"
