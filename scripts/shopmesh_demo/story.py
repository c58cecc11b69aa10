"""The demo's steps: a checkout, a declined card, a refund, each over REST through the edge.

Each step makes its calls, prints them with a one-line result, and raises
`DemoFailure` when what it shows does not happen (a wrong status, or a state
not reached before the deadline). The steps share one customer and one product.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from shopmesh_demo.client import Client, DemoFailure, Polled, Reply, poll
from shopmesh_demo.endpoints import Endpoints
from shopmesh_demo.narration import Narrator

VISA = "pm_card_visa"
DECLINED = "pm_card_chargeCustomerFail"

REGISTER = "Register a customer"
BROWSE = "Browse the catalog"
ORDER = "Place an order"
PAY = f"Pay with {VISA}"
CONFIRMED = "Watch the order become CONFIRMED"
NOTIFICATION = "See the notification"
MAIL = "See the mail in Mailpit"
DECLINED_CARD = f"A declined card ({DECLINED}): the order ends CANCELLED, its stock restored"
REFUND = "The owner cancels the paid order: refunded, its stock returned"
# The steps in the order they are printed; the span tree of the trace follows them.
STEPS = (REGISTER, BROWSE, ORDER, PAY, CONFIRMED, NOTIFICATION, MAIL, DECLINED_CARD, REFUND)

PASSWORD = "correct horse battery"
SHIPPING_ADDRESS = {
    "street": "1 Analytical Way",
    "city": "London",
    "state": "Greater London",
    "zipCode": "N1 7AA",
    "country": "GB",
}


@dataclass(frozen=True)
class StoryConfig:
    """What the story orders and how long it waits for each asynchronous outcome."""

    # A quiet corner of the demo catalog (scripts/shopmesh_stack/data/inventory.sql).
    category: str = "stationery"
    quantity: int = 2
    wait_seconds: float = 60.0


def money(amount: float, currency: str) -> str:
    return f"{amount:.2f} {currency}"


def short_status(status: str) -> str:
    """ORDER_STATUS_CONFIRMED -> CONFIRMED, PAYMENT_STATUS_FAILED -> FAILED."""
    return status.split("_STATUS_", 1)[-1]


@dataclass(frozen=True)
class Customer:
    id: str
    email: str
    token: str


@dataclass(frozen=True)
class Product:
    id: str
    name: str
    price: float
    currency: str
    # Available when browsed, before the demo's orders.
    available: int


class Story:
    """The demo's steps against one stack, in order (`run`)."""

    def __init__(self, client: Client, endpoints: Endpoints, narrator: Narrator, config: StoryConfig) -> None:
        self.client = client
        self.endpoints = endpoints
        self.say = narrator
        self.config = config

    # --- calls -----------------------------------------------------------------------------

    def edge(self, method: str, path: str, customer: Customer | None = None, **kwargs: Any) -> Reply:
        token = customer.token if customer else None
        return self.client.call(method, f"{self.endpoints.edge}{path}", token=token, **kwargs)

    def order_status(self, customer: Customer, order_id: str, status: str) -> Polled:
        """Poll the order until it has `status`; any other final status fails at once."""
        wanted = f"ORDER_STATUS_{status}"

        def reached(order: dict[str, Any]) -> bool:
            current = str(order.get("status", ""))
            if current != wanted and current in ("ORDER_STATUS_CONFIRMED", "ORDER_STATUS_CANCELLED"):
                raise DemoFailure(f"order {order_id} became {short_status(current)}, expected {status}")
            return current == wanted

        return poll(
            lambda: self.edge("GET", f"/api/v1/orders/{order_id}", customer),
            reached,
            deadline=self.config.wait_seconds,
            what=f"order {order_id} {status}",
        )

    def notification(self, customer: Customer, kind: str, order_id: str) -> tuple[Polled, dict[str, Any]]:
        """Poll the customer's feed until it holds a notification of `kind` about the order."""

        def found(feed: dict[str, Any]) -> dict[str, Any] | None:
            for item in feed.get("notifications", []):
                if item.get("kind") == f"NOTIFICATION_KIND_{kind}" and item.get("orderId") == order_id:
                    return dict(item)
            return None

        polled = poll(
            lambda: self.edge("GET", "/api/v1/notifications", customer, params={"pageSize": 20}),
            lambda feed: found(feed) is not None,
            deadline=self.config.wait_seconds,
            what=f"a {kind} notification for order {order_id}",
        )
        item = found(polled.reply.expect())
        assert item is not None
        return polled, item

    def stock(self, product: Product) -> tuple[Reply, int]:
        reply = self.edge("GET", f"/api/v1/products/{product.id}")
        return reply, int(reply.expect().get("stockAvailable", 0))

    def place_order(self, customer: Customer, product: Product) -> dict[str, Any]:
        body = {
            "userId": customer.id,
            "requestId": str(uuid.uuid4()),
            "items": [{"productId": product.id, "quantity": self.config.quantity, "price": product.price}],
            "shippingAddress": SHIPPING_ADDRESS,
        }
        reply = self.edge("POST", "/api/v1/orders", customer, body=body)
        order = reply.expect()
        if order.get("status") != "ORDER_STATUS_PENDING":
            raise DemoFailure(f"{reply.call}: a new order should be PENDING: {reply.text[:300]}")
        total = money(float(order.get("totalAmount", 0)), str(order.get("currency", "")))
        self.say.call(reply, f"order {order['id']} PENDING, {self.config.quantity} x {product.name}, {total}")
        return order

    def pay(self, customer: Customer, order: dict[str, Any], method: str, expected: str) -> dict[str, Any]:
        body = {
            "orderId": order["id"],
            "amount": order["totalAmount"],
            "currency": order["currency"],
            "paymentMethodId": method,
            "requestId": str(uuid.uuid4()),
        }
        reply = self.edge("POST", "/api/v1/payments", customer, body=body)
        payment = reply.expect()
        status = short_status(str(payment.get("status", "")))
        if status != expected:
            raise DemoFailure(f"{reply.call}: payment {status}, expected {expected}: {reply.text[:300]}")
        reason = f" ({payment['failureReason']})" if payment.get("failureReason") else ""
        amount = money(float(payment.get("amount", 0)), str(order["currency"]))
        self.say.call(reply, f"payment {payment['paymentId']} {status}{reason}, {amount}")
        return payment

    # --- steps -----------------------------------------------------------------------------

    def register(self) -> Customer:
        self.say.step(REGISTER)
        email = f"demo-{uuid.uuid4().hex[:8]}@example.com"
        body = {"email": email, "password": PASSWORD, "firstName": "Ada", "lastName": "Lovelace"}
        reply = self.edge("POST", "/api/v1/users/register", body=body)
        data = reply.expect()
        customer = Customer(str(data["user"]["id"]), email, str(data["token"]))
        self.say.call(reply, f"{email} is user {customer.id}, signed in (a bearer token)")
        return customer

    def browse(self) -> Product:
        self.say.step(BROWSE)
        reply = self.edge("GET", "/api/v1/products", params={"category": self.config.category, "pageSize": 5})
        products = reply.expect().get("products", [])
        listed = ", ".join(
            f"{p['name']} {money(float(p['price']), p['currency'])} ({p.get('stockAvailable', 0)} available)"
            for p in products
        )
        self.say.call(reply, f"{len(products)} products: {listed}")
        enough = [p for p in products if int(p.get("stockAvailable", 0)) >= self.config.quantity]
        if not enough:
            raise DemoFailure(f"no product in {self.config.category!r} has {self.config.quantity} in stock")
        chosen = enough[0]
        product = Product(
            chosen["id"], chosen["name"], float(chosen["price"]), chosen["currency"], int(chosen["stockAvailable"])
        )
        self.say.note(f"the demo buys {self.config.quantity} x {product.name} ({product.id})")
        return product

    def order(self, customer: Customer, product: Product) -> dict[str, Any]:
        self.say.step(ORDER)
        order = self.place_order(customer, product)
        reply, available = self.stock(product)
        self.say.call(reply, f"{available} available now: the order's {self.config.quantity} are reserved")
        return order

    def pay_with_visa(self, customer: Customer, order: dict[str, Any]) -> dict[str, Any]:
        self.say.step(PAY)
        return self.pay(customer, order, VISA, "SUCCEEDED")

    def confirmed(self, customer: Customer, order: dict[str, Any]) -> None:
        self.say.step(CONFIRMED)
        polled = self.order_status(customer, order["id"], "CONFIRMED")
        self.say.call(polled.reply, f"CONFIRMED {polled.summary} (payment-events -> orders over Kafka)")

    def notified(self, customer: Customer, order: dict[str, Any]) -> str:
        self.say.step(NOTIFICATION)
        polled, item = self.notification(customer, "ORDER_CONFIRMED", order["id"])
        self.say.call(polled.reply, f'"{item.get("title")}": {item.get("body")} ({polled.summary})')
        return str(item.get("title", ""))

    def mailed(self, customer: Customer, subject: str) -> None:
        self.say.step(MAIL)

        def mails() -> Reply:
            return self.client.call(
                "GET", f"{self.endpoints.mailpit}/api/v1/search", params={"query": f"to:{customer.email}"}
            )

        def subjects(found: dict[str, Any]) -> list[str]:
            return [str(m.get("Subject", "")) for m in found.get("messages", [])]

        polled = poll(
            mails,
            lambda found: subject in subjects(found),
            deadline=self.config.wait_seconds,
            what=f"the mail {subject!r} to {customer.email}",
        )
        held = ", ".join(f'"{s}"' for s in subjects(polled.reply.expect()))
        self.say.call(polled.reply, f"{customer.email} has {held} ({polled.summary})")
        self.say.note(f"read it at {self.endpoints.mailpit}")

    def declined(self, customer: Customer, product: Product) -> None:
        self.say.step(DECLINED_CARD)
        reply, before = self.stock(product)
        self.say.call(reply, f"stock before: {before} available")
        order = self.place_order(customer, product)
        reply, reserved = self.stock(product)
        self.say.call(reply, f"{reserved} available while the order holds its reservation")
        self.pay(customer, order, DECLINED, "FAILED")
        polled = self.order_status(customer, order["id"], "CANCELLED")
        reason = polled.reply.expect().get("cancellationReason", "")
        self.say.call(polled.reply, f"CANCELLED ({reason}) {polled.summary}")
        restored = self.stock_back(product, before)
        self.say.call(restored.reply, f"stock after: {before} available, restored ({restored.summary})")

    def stock_back(self, product: Product, available: int) -> Polled:
        """Poll the product until `available` units are available again."""
        return poll(
            lambda: self.edge("GET", f"/api/v1/products/{product.id}"),
            lambda found: int(found.get("stockAvailable", 0)) == available,
            deadline=self.config.wait_seconds,
            what=f"{product.id}'s stock back at {available}",
        )

    def refunded(self, customer: Customer, product: Product, order: dict[str, Any], payment: dict[str, Any]) -> None:
        self.say.step(REFUND)
        reply = self.edge("POST", f"/api/v1/orders/{order['id']}:cancel", customer, body={})
        cancelled = reply.expect()
        if cancelled.get("status") != "ORDER_STATUS_CANCELLED":
            raise DemoFailure(f"{reply.call}: expected CANCELLED: {reply.text[:300]}")
        self.say.call(reply, f"CANCELLED ({cancelled.get('cancellationReason', '')}), it was CONFIRMED and paid")
        polled = poll(
            lambda: self.edge("GET", f"/api/v1/payments/{payment['paymentId']}", customer),
            lambda found: found.get("status") == "PAYMENT_STATUS_REFUNDED",
            deadline=self.config.wait_seconds,
            what=f"payment {payment['paymentId']} REFUNDED",
        )
        refunded = polled.reply.expect()
        amount = money(float(refunded.get("amountRefunded", 0)), str(refunded.get("currency", "")))
        self.say.call(polled.reply, f"REFUNDED, {amount} back to the card ({polled.summary})")
        noticed, item = self.notification(customer, "PAYMENT_REFUNDED", order["id"])
        self.say.call(noticed.reply, f'"{item.get("title")}": {item.get("body")}')
        returned = self.stock_back(product, product.available)
        self.say.call(returned.reply, f"{product.available} available: the paid units are back in stock")

    def run(self) -> None:
        customer = self.register()
        product = self.browse()
        order = self.order(customer, product)
        payment = self.pay_with_visa(customer, order)
        self.confirmed(customer, order)
        subject = self.notified(customer, order)
        self.mailed(customer, subject)
        self.declined(customer, product)
        self.refunded(customer, product, order, payment)
