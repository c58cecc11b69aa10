"""OrderLookup over gRPC: orders' GetOrder, called as the `payments` mesh identity.

mesh/mesh.yaml lets `payments` call GetOrder without a user token (`callers:
[payments]`); the channel presents this service's certificate. Anything but an
answer or NOT_FOUND means the order cannot be checked now: UNAVAILABLE, so a
payment is never taken against an order nobody looked at.
"""

from __future__ import annotations

import logging

import grpc
from grpc import aio

from shopmesh.order.v1 import order_service_pb2 as order_pb
from shopmesh.order.v1 import order_service_pb2_grpc
from shopmesh_payments.records import OrderSnapshot
from shopmesh_platform.errors import Unavailable

logger = logging.getLogger("shopmesh.payments.orders")
_STATUS_PREFIX = "ORDER_STATUS_"


def minor_units(major: float) -> int:
    """Major units (29.99) to integer minor units (2999), once, rounding away float noise."""
    return round(major * 100)


class GrpcOrderLookup:
    def __init__(self, channel: aio.Channel) -> None:
        self._stub = order_service_pb2_grpc.OrderServiceStub(channel)  # type: ignore[no-untyped-call]

    async def get(self, order_id: str) -> OrderSnapshot | None:
        try:
            order = await self._stub.GetOrder(order_pb.GetOrderRequest(id=order_id))
        except aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                return None
            logger.warning("the orders service did not answer GetOrder", extra={"grpc_code": error.code().name})
            raise Unavailable(
                "the order cannot be checked right now; try again later",
                reason="ORDERS_UNAVAILABLE",
                domain="payments",
            ) from None
        return OrderSnapshot(
            id=order.id,
            user_id=order.user_id,
            status=order_pb.OrderStatus.Name(order.status).removeprefix(_STATUS_PREFIX),
            total_minor=minor_units(order.total_amount),
            currency=order.currency.upper(),
        )
