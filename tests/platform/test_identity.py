"""Caller identities without mutual TLS in the service itself.

MESH_TLS=off trusts no header at all; MESH_TLS=sidecar trusts only the element of
`x-forwarded-client-cert` that the local sidecar appended (the last one, naming
this workload as `By`). Anything a client wrote itself never names the caller.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import grpc
import pytest
from grpc import aio

from shopmesh.inventory.v1 import inventory_service_pb2 as inventory_pb2
from shopmesh.inventory.v1 import inventory_service_pb2_grpc as inventory_grpc
from shopmesh_platform.config import TransportSecurity
from shopmesh_platform.mesh import load_mesh
from shopmesh_platform.server import ShopmeshServer
from shopmesh_platform.transport import CLIENT_CERT_HEADER, parse_xfcc, sidecar_identity
from tests.conftest import ConfigFactory
from tests.platform.sample_service import SampleInventory, build

SPIFFE = "spiffe://cluster.local/ns/shopmesh/sa/"


def element(caller: str, *, by: str = "inventory") -> str:
    """What an Istio sidecar in front of `by` appends for a caller presenting `caller`'s certificate."""
    return f'By={SPIFFE}{by};Hash=0f1e2d;Subject="CN={caller},O=shopmesh";URI={SPIFFE}{caller};DNS={caller}'


def reserve_request() -> inventory_pb2.ReserveStockRequest:
    return inventory_pb2.ReserveStockRequest(
        order_id="0b8e8a52-1a5f-4d8e-9a49-5d0c8f3f7e21",
        lines=[inventory_pb2.ReservationLineInput(product_id="prod-1", quantity=1)],
    )


async def reserve_stock(server: ShopmeshServer, xfcc: str | None) -> grpc.StatusCode:
    """Call the internal ReserveStock (declared for `orders` only) over plaintext."""
    metadata = () if xfcc is None else ((CLIENT_CERT_HEADER, xfcc),)
    async with aio.insecure_channel(f"127.0.0.1:{server.grpc_port}") as chan:
        try:
            await inventory_grpc.InventoryServiceStub(chan).ReserveStock(reserve_request(), metadata=metadata)
        except aio.AioRpcError as error:
            return error.code()
    return grpc.StatusCode.OK


@pytest.fixture
async def plaintext_server(make_config: ConfigFactory) -> AsyncIterator[ShopmeshServer]:
    running = build(make_config(MESH_TLS="off", SHOPMESH_DRAIN_GRACE_SECONDS="1"), SampleInventory())
    await running.start()
    yield running
    await running.drain()


@pytest.fixture
async def sidecar_server(make_config: ConfigFactory) -> AsyncIterator[ShopmeshServer]:
    running = build(make_config(MESH_TLS="sidecar", SHOPMESH_DRAIN_GRACE_SECONDS="1"), SampleInventory())
    await running.start()
    yield running
    await running.drain()


# --- the header's grammar (Envoy: elements by ',', pairs by ';', values optionally quoted)


def test_elements_and_pairs_are_split_and_keys_are_case_insensitive() -> None:
    parsed = parse_xfcc(f"By={SPIFFE}a;URI={SPIFFE}b,by={SPIFFE}c;uri={SPIFFE}d;URI=")
    assert len(parsed) == 2
    assert parsed[0].values("uri") == [f"{SPIFFE}b"]
    assert parsed[1].values("By") == [f"{SPIFFE}c"]
    assert parsed[1].values("URI") == [f"{SPIFFE}d", ""]


def test_quoted_values_keep_commas_semicolons_and_escaped_quotes() -> None:
    header = f'Subject="CN=x,OU=a;b, \\"q\\"";URI={SPIFFE}orders, By={SPIFFE}inventory;URI={SPIFFE}edge'
    parsed = parse_xfcc(header)
    assert len(parsed) == 2
    assert parsed[0].values("subject") == ['CN=x,OU=a;b, "q"']
    assert parsed[0].values("uri") == [f"{SPIFFE}orders"]
    assert parsed[1].values("uri") == [f"{SPIFFE}edge"]


@pytest.mark.parametrize(
    "header",
    ['By=a;Subject="CN=x', "By=a;justakey", 'By=a;Subject="x"y', "By=a;;URI=b", "", "By=a,,URI=b", "=x"],
)
def test_malformed_headers_are_rejected(header: str) -> None:
    with pytest.raises(ValueError):
        parse_xfcc(header)


# --- which element names the caller


def test_sidecar_identity_is_the_last_element_added_for_this_workload() -> None:
    mesh = load_mesh()
    assert sidecar_identity(mesh, "inventory", element("orders")) == "orders"
    # A client-written element in front of the sidecar's is ignored.
    forged = f"By={SPIFFE}inventory;URI={SPIFFE}orders"
    assert sidecar_identity(mesh, "inventory", f"{forged},{element('edge')}") == "edge"
    # A quoted comma in an earlier element does not start a new element.
    assert sidecar_identity(mesh, "inventory", f'Subject="a,{forged}",{element("payments")}') == "payments"


@pytest.mark.parametrize(
    "header",
    [
        element("orders", by="users"),  # appended by another workload's proxy
        f"URI={SPIFFE}orders",  # no By: not written by a sidecar
        f"By={SPIFFE}inventory;URI=spiffe://elsewhere/ns/shopmesh/sa/orders",  # another trust domain
        f"By={SPIFFE}inventory;URI={SPIFFE}orders;URI={SPIFFE}payments",  # ambiguous
        f"By={SPIFFE}inventory;URI=",  # the caller's certificate had no URI SAN
        f'{element("orders")};Subject="unterminated',  # malformed: trust nothing
    ],
)
def test_sidecar_identity_refuses_what_the_local_sidecar_did_not_vouch_for(header: str) -> None:
    assert sidecar_identity(load_mesh(), "inventory", header) is None


# --- end to end, over plaintext


async def test_off_trusts_no_forwarded_identity(plaintext_server: ShopmeshServer) -> None:
    assert plaintext_server.config.transport is TransportSecurity.OFF
    assert await reserve_stock(plaintext_server, element("orders")) == grpc.StatusCode.PERMISSION_DENIED
    assert await reserve_stock(plaintext_server, f"URI={SPIFFE}orders") == grpc.StatusCode.PERMISSION_DENIED


async def test_sidecar_mode_trusts_only_the_sidecars_element(sidecar_server: ShopmeshServer) -> None:
    # Past authorization the sample answers UNIMPLEMENTED; a refusal is PERMISSION_DENIED.
    assert await reserve_stock(sidecar_server, element("orders")) == grpc.StatusCode.UNIMPLEMENTED
    forged_then_sidecar = f"By={SPIFFE}inventory;URI={SPIFFE}orders,{element('edge')}"
    assert await reserve_stock(sidecar_server, forged_then_sidecar) == grpc.StatusCode.PERMISSION_DENIED
    assert await reserve_stock(sidecar_server, f"URI={SPIFFE}orders") == grpc.StatusCode.PERMISSION_DENIED
    assert await reserve_stock(sidecar_server, 'By="unterminated') == grpc.StatusCode.PERMISSION_DENIED
    assert await reserve_stock(sidecar_server, None) == grpc.StatusCode.PERMISSION_DENIED


async def test_two_forwarded_cert_headers_are_refused(sidecar_server: ShopmeshServer) -> None:
    async with aio.insecure_channel(f"127.0.0.1:{sidecar_server.grpc_port}") as chan:
        with pytest.raises(aio.AioRpcError) as caught:
            await inventory_grpc.InventoryServiceStub(chan).ReserveStock(
                reserve_request(),
                metadata=((CLIENT_CERT_HEADER, element("orders")), (CLIENT_CERT_HEADER, element("orders"))),
            )
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


@pytest.mark.parametrize(("mode", "says"), [("off", "trusting no caller identity"), ("sidecar", "sidecar")])
async def test_plaintext_modes_warn_at_start(
    make_config: ConfigFactory, caplog: pytest.LogCaptureFixture, mode: str, says: str
) -> None:
    with caplog.at_level(logging.WARNING, logger="shopmesh.transport"):
        server = build(make_config(MESH_TLS=mode), SampleInventory())
    await server.drain()
    warnings = [r.getMessage() for r in caplog.records if r.name == "shopmesh.transport"]
    assert len(warnings) == 1
    assert f"MESH_TLS={mode}" in warnings[0] and says in warnings[0]
