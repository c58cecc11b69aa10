"""The pure rules of orders: derived ids, fingerprints, the admin lifecycle, owner cancels, expiry."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from shopmesh_orders import rules
from shopmesh_orders.records import Address, ItemRequest, Order, OrderLine, OrderStatus
from shopmesh_platform.errors import FailedPrecondition, PermissionDenied

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
ADDRESS = Address("1 Way", "London", "LDN", "N1", "GB")
USER = str(uuid.uuid4())


def order(status: OrderStatus = OrderStatus.PENDING, expires_at: dt.datetime = NOW) -> Order:
    line = OrderLine("prod-123", "Widget", 2, 2999)
    return Order(
        id=str(uuid.uuid4()),
        user_id=USER,
        status=status,
        lines=(line,),
        total_minor=5998,
        currency="USD",
        shipping_address=ADDRESS,
        created_at=NOW,
        updated_at=NOW,
        expires_at=expires_at,
        cancellation_reason="",
        request_fingerprint="",
        version=1,
    )


def test_order_ids_derive_from_the_caller_and_the_request_id() -> None:
    request_id = str(uuid.uuid4())
    first = rules.order_id_for(USER, request_id)
    assert first == rules.order_id_for(USER, request_id.upper())
    assert uuid.UUID(first).version == 5
    assert first != rules.order_id_for(str(uuid.uuid4()), request_id)
    assert first != rules.order_id_for(USER, str(uuid.uuid4()))
    # Without a request id every order is new.
    assert rules.order_id_for(USER, "") != rules.order_id_for(USER, "")


def test_a_fingerprint_tells_a_retry_from_another_order() -> None:
    items = [ItemRequest("prod-1", 2, 29.99)]
    assert rules.fingerprint(items, ADDRESS) == rules.fingerprint(list(items), ADDRESS)
    assert rules.fingerprint(items, ADDRESS) != rules.fingerprint([ItemRequest("prod-1", 3, 29.99)], ADDRESS)
    assert rules.fingerprint(items, ADDRESS) != rules.fingerprint(items, Address("2 Way", "London", "LDN", "N1", "GB"))


def test_the_user_id_must_be_the_callers() -> None:
    rules.require_own_user_id(USER, USER.upper())
    for caller in (None, str(uuid.uuid4())):
        with pytest.raises(PermissionDenied) as refused:
            rules.require_own_user_id(caller, USER)
        assert refused.value.field_violations[0].field == "user_id"


LEGAL = {
    (OrderStatus.CONFIRMED, OrderStatus.SHIPPED),
    (OrderStatus.SHIPPED, OrderStatus.DELIVERED),
    (OrderStatus.PENDING, OrderStatus.CANCELLED),
    (OrderStatus.CONFIRMED, OrderStatus.CANCELLED),
}


@pytest.mark.parametrize("current", list(OrderStatus))
@pytest.mark.parametrize("target", list(OrderStatus))
def test_admins_make_only_the_legal_transitions(current: OrderStatus, target: OrderStatus) -> None:
    if (current, target) in LEGAL:
        rules.check_admin_transition(current, target)
        return
    with pytest.raises(FailedPrecondition) as refused:
        rules.check_admin_transition(current, target)
    assert current.value in refused.value.message and target.value in refused.value.message


def test_owners_cancel_before_shipping() -> None:
    for status in (OrderStatus.PENDING, OrderStatus.CONFIRMED, OrderStatus.CANCELLED):
        rules.check_owner_cancel(status)
    for status in (OrderStatus.SHIPPED, OrderStatus.DELIVERED):
        with pytest.raises(FailedPrecondition):
            rules.check_owner_cancel(status)


def test_only_unpaid_orders_past_their_deadline_expire() -> None:
    assert rules.is_expired(order(expires_at=NOW), NOW)
    assert not rules.is_expired(order(expires_at=NOW + dt.timedelta(seconds=1)), NOW)
    assert not rules.is_expired(order(OrderStatus.CONFIRMED, expires_at=NOW), NOW)


def test_lines_keep_the_clients_order_and_total_exactly() -> None:
    reserved = [OrderLine("prod-a", "A", 3, 10), OrderLine("prod-b", "B", 1, 1999)]
    items = [ItemRequest("prod-b", 1, 19.99), ItemRequest("prod-a", 3, 0.1)]
    lines = rules.ordered_lines(items, reserved)
    assert [line.product_id for line in lines] == ["prod-b", "prod-a"]
    assert rules.total_minor(lines) == 2029


def test_an_order_survives_its_document() -> None:
    original = order()
    assert Order.from_state(original.to_state(), original.version) == original
