"""Orders as protos: major-unit amounts converted once from exact minor units."""

from __future__ import annotations

import datetime as dt

from google.protobuf import timestamp_pb2

from shopmesh.order.v1 import order_service_pb2 as pb
from shopmesh_orders.records import Address, Order, OrderLine, OrderStatus
from shopmesh_platform.money import to_major

STATUS_TO_PROTO = {
    OrderStatus.PENDING: pb.ORDER_STATUS_PENDING,
    OrderStatus.CONFIRMED: pb.ORDER_STATUS_CONFIRMED,
    OrderStatus.SHIPPED: pb.ORDER_STATUS_SHIPPED,
    OrderStatus.DELIVERED: pb.ORDER_STATUS_DELIVERED,
    OrderStatus.CANCELLED: pb.ORDER_STATUS_CANCELLED,
}
STATUS_FROM_PROTO = {value: key for key, value in STATUS_TO_PROTO.items()}


def timestamp(value: dt.datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value)
    return stamp


def item_to_proto(line: OrderLine, currency: str) -> pb.OrderItem:
    return pb.OrderItem(
        product_id=line.product_id,
        name=line.name,
        quantity=line.quantity,
        price=to_major(line.unit_price_minor, currency),
        line_total=to_major(line.total_minor, currency),
    )


def address_to_proto(address: Address) -> pb.ShippingAddress:
    return pb.ShippingAddress(
        street=address.street,
        city=address.city,
        state=address.state,
        zip_code=address.zip_code,
        country=address.country,
    )


def order_to_proto(order: Order) -> pb.Order:
    return pb.Order(
        id=order.id,
        user_id=order.user_id,
        items=[item_to_proto(line, order.currency) for line in order.lines],
        total_amount=to_major(order.total_minor, order.currency),
        currency=order.currency,
        status=STATUS_TO_PROTO[order.status],
        shipping_address=address_to_proto(order.shipping_address),
        created_at=timestamp(order.created_at),
        updated_at=timestamp(order.updated_at),
        reservation_expires_at=timestamp(order.expires_at),
        cancellation_reason=order.cancellation_reason,
    )
