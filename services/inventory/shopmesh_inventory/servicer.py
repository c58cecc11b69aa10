"""gRPC servicer of shopmesh.inventory.v1.InventoryService: converts between protos and the domain.

Methods not defined here answer UNIMPLEMENTED (the generated base class raises
NotImplementedError, which the platform maps); they are built by later issues.
"""

from __future__ import annotations

from shopmesh.inventory.v1 import inventory_service_pb2, inventory_service_pb2_grpc
from shopmesh_platform.server import ServiceBinding


class InventoryServicer(inventory_service_pb2_grpc.InventoryServiceServicer):
    """The inventory service's API."""


def binding(servicer: InventoryServicer) -> ServiceBinding:
    return ServiceBinding.of(servicer, inventory_service_pb2, inventory_service_pb2_grpc, "InventoryService")
