"""Does orders have this order? Orders' GetOrder, called as the `inventory` mesh identity.

mesh/mesh.yaml lets `inventory` call GetOrder without a user token (`callers`).
The orphan reaper asks before releasing a reservation: an answer means yes,
NOT_FOUND means no, anything else means orders cannot tell now (None), and the
reaper releases nothing.
"""

from __future__ import annotations

import logging

import grpc
from grpc import aio

from shopmesh.order.v1 import order_service_pb2 as order_pb
from shopmesh.order.v1 import order_service_pb2_grpc

logger = logging.getLogger("shopmesh.inventory.orders")


class GrpcOrderExistence:
    def __init__(self, channel: aio.Channel) -> None:
        self._stub = order_service_pb2_grpc.OrderServiceStub(channel)  # type: ignore[no-untyped-call]

    async def __call__(self, order_id: str) -> bool | None:
        try:
            await self._stub.GetOrder(order_pb.GetOrderRequest(id=order_id))
        except aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                return False
            logger.warning("the orders service did not answer GetOrder", extra={"grpc_code": error.code().name})
            return None
        return True
