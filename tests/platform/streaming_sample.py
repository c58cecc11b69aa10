"""A test-only service with the three streaming call kinds, to exercise the platform.

No contract of the mesh streams yet, and test needs do not justify changing
one, so the service is described here: its descriptor is built in code (and
added to the default pool, so reflection can describe it) and reuses the
inventory messages, whose validation rules then apply to every streamed request.

- WatchProduct (server streaming, `user` in `sample_mesh`): three products, or for
  `prod-missing` one product then NotFound, for `prod-crash` one then a crash.
- ImportProducts (client streaming, `public`): one product per request (read with
  `context.read()`).
- SyncProducts (bidirectional, `public`): echoes one product per request.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.descriptor import ServiceDescriptor
from grpc import aio

from shopmesh.inventory.v1 import inventory_service_pb2 as inventory_pb2
from shopmesh_platform.context import current_caller
from shopmesh_platform.errors import NotFound
from shopmesh_platform.server import ServiceBinding

PACKAGE = "shopmesh.sample.v1"
SERVICE = f"{PACKAGE}.StreamingSample"
WATCHED_PRODUCTS = 3


def _build_descriptor() -> ServiceDescriptor:
    inventory = inventory_pb2.DESCRIPTOR
    file_proto = descriptor_pb2.FileDescriptorProto(
        name="shopmesh/sample/v1/streaming_sample.proto",
        package=PACKAGE,
        syntax="proto3",
        dependency=[inventory.name],
    )
    service = file_proto.service.add(name="StreamingSample")
    for name, request, response, client_streaming, server_streaming in (
        ("WatchProduct", "GetProductRequest", "Product", False, True),
        ("ImportProducts", "GetProductRequest", "ListProductsResponse", True, False),
        ("SyncProducts", "GetProductRequest", "Product", True, True),
    ):
        service.method.add(
            name=name,
            input_type=f".{inventory.package}.{request}",
            output_type=f".{inventory.package}.{response}",
            client_streaming=client_streaming,
            server_streaming=server_streaming,
        )
    pool = descriptor_pool.Default()
    try:
        built = pool.FindFileByName(file_proto.name)
    except KeyError:
        built = pool.AddSerializedFile(file_proto.SerializeToString())
    return built.services_by_name["StreamingSample"]


DESCRIPTOR = _build_descriptor()


def sample_mesh(mesh_document: dict[str, Any]) -> dict[str, Any]:
    """`mesh_document` with the sample service declared (tests may tweak it further)."""
    mesh_document["services"]["sample"] = {
        "package": PACKAGE,
        "service": "StreamingSample",
        "grpc_port": 50090,
        "metrics_port": 51090,
        "methods": {
            "WatchProduct": {"access": "user"},
            "ImportProducts": {"access": "public"},
            "SyncProducts": {"access": "public"},
        },
    }
    return mesh_document


def product(product_id: str, name: str = "Sample") -> inventory_pb2.Product:
    return inventory_pb2.Product(id=product_id, name=name, price=9.99, currency="USD")


class StreamingSample:
    """The handlers; `WatchProduct` names its products after the calling user."""

    async def WatchProduct(
        self, request: inventory_pb2.GetProductRequest, context: aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[inventory_pb2.Product]:
        user = current_caller().user_id or "(anonymous)"
        for version in range(WATCHED_PRODUCTS):
            yield product(request.id, name=f"{user} v{version}")
            if request.id == "prod-missing":
                raise NotFound(f"no product {request.id}", reason="PRODUCT_NOT_FOUND", domain="inventory")
            if request.id == "prod-crash":
                raise RuntimeError("secret internals: db password is hunter2")

    async def ImportProducts(
        self, requests: AsyncIterator[inventory_pb2.GetProductRequest], context: aio.ServicerContext[Any, Any]
    ) -> inventory_pb2.ListProductsResponse:
        # Reads with the reader API rather than the iterator: validation must cover both.
        imported = inventory_pb2.ListProductsResponse()
        while (request := await context.read()) is not aio.EOF:
            imported.products.append(product(request.id))
        return imported

    async def SyncProducts(
        self, requests: AsyncIterator[inventory_pb2.GetProductRequest], context: aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[inventory_pb2.Product]:
        async for request in requests:
            yield product(request.id)


def _register(servicer: StreamingSample, server: aio.Server) -> None:
    request = inventory_pb2.GetProductRequest
    handlers = {
        "WatchProduct": grpc.unary_stream_rpc_method_handler(
            servicer.WatchProduct,
            request_deserializer=request.FromString,
            response_serializer=inventory_pb2.Product.SerializeToString,
        ),
        "ImportProducts": grpc.stream_unary_rpc_method_handler(
            servicer.ImportProducts,
            request_deserializer=request.FromString,
            response_serializer=inventory_pb2.ListProductsResponse.SerializeToString,
        ),
        "SyncProducts": grpc.stream_stream_rpc_method_handler(
            servicer.SyncProducts,
            request_deserializer=request.FromString,
            response_serializer=inventory_pb2.Product.SerializeToString,
        ),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))


def binding(servicer: StreamingSample) -> ServiceBinding:
    return ServiceBinding(descriptor=DESCRIPTOR, servicer=servicer, register=_register)


class Stub:
    """A client for the sample service (there is no generated stub)."""

    def __init__(self, channel: aio.Channel) -> None:
        request = inventory_pb2.GetProductRequest.SerializeToString
        product_from = inventory_pb2.Product.FromString
        self.WatchProduct = channel.unary_stream(
            f"/{SERVICE}/WatchProduct", request_serializer=request, response_deserializer=product_from
        )
        self.ImportProducts = channel.stream_unary(
            f"/{SERVICE}/ImportProducts",
            request_serializer=request,
            response_deserializer=inventory_pb2.ListProductsResponse.FromString,
        )
        self.SyncProducts = channel.stream_stream(
            f"/{SERVICE}/SyncProducts", request_serializer=request, response_deserializer=product_from
        )
