"""gRPC servicer of shopmesh.order.v1.OrderService: converts between protos and the domain."""

from __future__ import annotations

from typing import Any

from shopmesh.order.v1 import order_service_pb2 as pb
from shopmesh.order.v1 import order_service_pb2_grpc
from shopmesh_orders.convert import STATUS_FROM_PROTO, order_to_proto
from shopmesh_orders.domain import Orders
from shopmesh_orders.records import Address, ItemRequest, NewOrder
from shopmesh_platform.context import current_caller
from shopmesh_platform.server import ServiceBinding


def _new_order(request: pb.CreateOrderRequest) -> NewOrder:
    address = request.shipping_address
    return NewOrder(
        user_id=request.user_id,
        items=tuple(
            ItemRequest(product_id=item.product_id, quantity=item.quantity, price=item.price) for item in request.items
        ),
        shipping_address=Address(
            street=address.street,
            city=address.city,
            state=address.state,
            zip_code=address.zip_code,
            country=address.country,
        ),
        request_id=request.request_id,
    )


class OrderServicer(order_service_pb2_grpc.OrderServiceServicer):
    """The orders service's API."""

    def __init__(self, orders: Orders) -> None:
        self._orders = orders

    async def CreateOrder(self, request: pb.CreateOrderRequest, context: Any) -> pb.Order:
        return order_to_proto(await self._orders.create(current_caller(), _new_order(request)))

    async def GetOrder(self, request: pb.GetOrderRequest, context: Any) -> pb.Order:
        return order_to_proto(await self._orders.get(current_caller(), request.id.lower()))

    async def ListOrders(self, request: pb.ListOrdersRequest, context: Any) -> pb.ListOrdersResponse:
        page = await self._orders.list(
            current_caller(),
            page_size=request.page_size,
            page_token=request.page_token,
            user_id=request.user_id,
            status=STATUS_FROM_PROTO.get(request.status),
        )
        return pb.ListOrdersResponse(
            orders=[order_to_proto(order) for order in page.orders], next_page_token=page.next_page_token
        )

    async def UpdateOrderStatus(self, request: pb.UpdateOrderStatusRequest, context: Any) -> pb.Order:
        target = STATUS_FROM_PROTO[request.status]
        return order_to_proto(await self._orders.update_status(current_caller(), request.id.lower(), target))

    async def CancelOrder(self, request: pb.CancelOrderRequest, context: Any) -> pb.Order:
        return order_to_proto(await self._orders.cancel(current_caller(), request.id.lower()))


def binding(servicer: OrderServicer) -> ServiceBinding:
    return ServiceBinding.of(servicer, pb, order_service_pb2_grpc, "OrderService")
