"""gRPC servicer of shopmesh.inventory.v1.InventoryService: converts between protos and the domain."""

from __future__ import annotations

import datetime as dt
from typing import Any

from google.protobuf import timestamp_pb2

from shopmesh.inventory.v1 import inventory_service_pb2 as pb
from shopmesh.inventory.v1 import inventory_service_pb2_grpc
from shopmesh_inventory.domain import Inventory
from shopmesh_inventory.records import (
    LineRequest,
    NewProduct,
    ProductRecord,
    Reservation,
    ReservationState,
    StockAdjustment,
)
from shopmesh_platform import money
from shopmesh_platform.server import ServiceBinding

STATES = {
    ReservationState.ACTIVE: pb.RESERVATION_STATE_ACTIVE,
    ReservationState.COMMITTED: pb.RESERVATION_STATE_COMMITTED,
    ReservationState.RELEASED: pb.RESERVATION_STATE_RELEASED,
    ReservationState.EXPIRED: pb.RESERVATION_STATE_EXPIRED,
    ReservationState.RETURNED: pb.RESERVATION_STATE_RETURNED,
}


def _timestamp(value: dt.datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value)
    return stamp


def product_to_proto(product: ProductRecord) -> pb.Product:
    return pb.Product(
        id=product.id,
        name=product.name,
        description=product.description,
        price=money.to_major(product.price_minor, product.currency),
        currency=product.currency,
        stock_available=product.available,
        category=product.category,
        image_url=product.image_url,
        created_at=_timestamp(product.created_at),
        updated_at=_timestamp(product.updated_at),
        active=product.active,
    )


def reservation_to_proto(reservation: Reservation) -> pb.Reservation:
    message = pb.Reservation(
        order_id=reservation.order_id,
        lines=[
            pb.ReservationLine(
                product_id=line.product_id,
                name=line.name,
                quantity=line.quantity,
                unit_price_minor=line.unit_price_minor,
            )
            for line in reservation.lines
        ],
        total_minor=reservation.total_minor,
        currency=reservation.currency,
        state=STATES[reservation.state],
    )
    if reservation.expires_at is not None:
        message.expires_at.CopyFrom(_timestamp(reservation.expires_at))
    return message


def _new_product(request: pb.CreateProductRequest) -> NewProduct:
    currency = request.currency.upper()
    return NewProduct(
        id=request.id,
        name=request.name,
        description=request.description,
        price_minor=money.to_minor(request.price, currency, field="price", domain="inventory"),
        currency=currency,
        category=request.category,
        image_url=request.image_url,
        active=request.active if request.HasField("active") else True,
        initial_stock=request.stock,
    )


class InventoryServicer(inventory_service_pb2_grpc.InventoryServiceServicer):
    """The inventory service's API."""

    def __init__(self, inventory: Inventory) -> None:
        self._inventory = inventory

    async def ListProducts(self, request: pb.ListProductsRequest, context: Any) -> pb.ListProductsResponse:
        page = await self._inventory.list_products(
            page_size=request.page_size, page_token=request.page_token, category=request.category
        )
        return pb.ListProductsResponse(
            products=[product_to_proto(p) for p in page.products], next_page_token=page.next_page_token
        )

    async def GetProduct(self, request: pb.GetProductRequest, context: Any) -> pb.Product:
        return product_to_proto(await self._inventory.get_product(request.id))

    async def CreateProduct(self, request: pb.CreateProductRequest, context: Any) -> pb.Product:
        return product_to_proto(await self._inventory.create_product(_new_product(request)))

    async def AdjustStock(self, request: pb.AdjustStockRequest, context: Any) -> pb.Product:
        adjustment = StockAdjustment(
            product_id=request.product_id, delta=request.delta, reason=request.reason, request_id=request.request_id
        )
        return product_to_proto(await self._inventory.adjust_stock(adjustment))

    async def ReserveStock(self, request: pb.ReserveStockRequest, context: Any) -> pb.ReserveStockResponse:
        lines = [
            LineRequest(
                product_id=line.product_id,
                quantity=line.quantity,
                expected_price=line.expected_price if line.HasField("expected_price") else None,
            )
            for line in request.lines
        ]
        reservation = await self._inventory.reserve(request.order_id, lines)
        return pb.ReserveStockResponse(reservation=reservation_to_proto(reservation))

    async def GetReservation(self, request: pb.GetReservationRequest, context: Any) -> pb.GetReservationResponse:
        reservation = await self._inventory.get_reservation(request.order_id)
        return pb.GetReservationResponse(reservation=reservation_to_proto(reservation))


def binding(servicer: InventoryServicer) -> ServiceBinding:
    return ServiceBinding.of(servicer, pb, inventory_service_pb2_grpc, "InventoryService")


__all__ = ["InventoryServicer", "binding"]
