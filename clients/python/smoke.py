"""Smoke program of the Python client: one session against a running shopmesh, through the edge.

Registers, logs in, reads the account back (GetMe, GetUser), and decodes the error
of an invalid registration (ErrorInfo reason, BadRequest field violations). With
--with-orders it also lists products, places an order and reads it back. Prints one
JSON object with what it saw; exits non-zero when a step fails.

    python smoke.py --edge 127.0.0.1:8080 --email ada@example.com --password 'correct horse battery'
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2

from shopmesh.inventory.v1 import inventory_service_pb2, inventory_service_pb2_grpc
from shopmesh.order.v1 import order_service_pb2, order_service_pb2_grpc
from shopmesh.user.v1 import user_service_pb2, user_service_pb2_grpc
from shopmesh_client import edge_channel

TIMEOUT = 15.0


def check(condition: bool, message: str) -> None:
    if not condition:
        raise SystemExit(f"smoke: {message}")


def decode_error(error: grpc.RpcError) -> dict[str, Any]:
    """The status code, ErrorInfo and BadRequest details of a failed call."""
    status = status_pb2.Status()
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            status.ParseFromString(value)
    info, bad_request = error_details_pb2.ErrorInfo(), error_details_pb2.BadRequest()
    for detail in status.details:
        if detail.Is(info.DESCRIPTOR):
            detail.Unpack(info)
        elif detail.Is(bad_request.DESCRIPTOR):
            detail.Unpack(bad_request)
    return {
        "errorCode": error.code().name,
        "errorReason": info.reason,
        "errorDomain": info.domain,
        "violations": sorted(v.field for v in bad_request.field_violations),
    }


def orders(edge: str, token: str, user_id: str) -> dict[str, Any]:
    with edge_channel(edge, token=token) as channel:
        products = inventory_service_pb2_grpc.InventoryServiceStub(channel).ListProducts(
            inventory_service_pb2.ListProductsRequest(page_size=10), timeout=TIMEOUT
        )
        in_stock = [p for p in products.products if p.stock_available > 0]
        check(bool(in_stock), "ListProducts returned no product in stock")
        product = in_stock[0]
        stub = order_service_pb2_grpc.OrderServiceStub(channel)
        created = stub.CreateOrder(
            order_service_pb2.CreateOrderRequest(
                user_id=user_id,
                items=[order_service_pb2.OrderItemInput(product_id=product.id, quantity=1, price=product.price)],
                shipping_address=order_service_pb2.ShippingAddress(
                    street="1 Analytical Way", city="London", state="LDN", zip_code="N1 9GU", country="GB"
                ),
                request_id=str(uuid.uuid4()),
            ),
            timeout=TIMEOUT,
        )
        read = stub.GetOrder(order_service_pb2.GetOrderRequest(id=created.id), timeout=TIMEOUT)
        check(read.id == created.id and read.user_id == user_id, "GetOrder did not return the order just created")
        return {
            "productId": product.id,
            "orderId": read.id,
            "orderStatus": order_service_pb2.OrderStatus.Name(read.status),
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--edge", default="127.0.0.1:8080", help="the edge's host:port (plaintext h2c)")
    parser.add_argument("--email", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--with-orders", action="store_true", help="also list products, create and read an order")
    args = parser.parse_args()

    with edge_channel(args.edge) as channel:
        users = user_service_pb2_grpc.UserServiceStub(channel)
        registered = users.RegisterUser(
            user_service_pb2.RegisterUserRequest(
                email=args.email, password=args.password, first_name="Ada", last_name="Lovelace"
            ),
            timeout=TIMEOUT,
        )
        token = users.Login(user_service_pb2.LoginRequest(email=args.email, password=args.password), timeout=TIMEOUT)
        try:
            users.RegisterUser(
                user_service_pb2.RegisterUserRequest(email="not-an-email", password="x", first_name="A", last_name="L"),
                timeout=TIMEOUT,
            )
        except grpc.RpcError as error:
            refused = decode_error(error)
        else:
            raise SystemExit("smoke: an invalid registration was accepted")

    with edge_channel(args.edge, token=token.token) as channel:
        users = user_service_pb2_grpc.UserServiceStub(channel)
        me = users.GetMe(user_service_pb2.GetMeRequest(), timeout=TIMEOUT)
        check(me.id == registered.user.id, "GetMe is not the registered account")
        again = users.GetUser(user_service_pb2.GetUserRequest(id=me.id), timeout=TIMEOUT)
        check(again.email == me.email, "GetUser disagrees with GetMe")

    result: dict[str, Any] = {"userId": me.id, "email": me.email, **refused}
    if args.with_orders:
        result.update(orders(args.edge, token.token, me.id))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
