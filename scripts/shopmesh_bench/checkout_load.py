"""The checkout load generator: open-loop arrivals of order -> pay -> CONFIRMED, in a process of its own.

`python -m shopmesh_bench.checkout_load SPEC OUT` reads a JSON spec (edge address,
pre-registered accounts with their tokens, rate, seconds, seed, start time), waits
until the start time (so several generators start together), then starts one
checkout at each arrival of the seeded Poisson schedule whether or not earlier
ones finished (open loop). A checkout is, through the edge's gRPC listener as a
client calls it: CreateOrder, CreatePayment with a Visa test card, then GetOrder
polled with backoff until CONFIRMED (or a deadline). Payment -> CONFIRMED is
read from the order itself: its `updated_at` when it became CONFIRMED (the
server's commit of the transition) minus the moment the payment was sent, so the
polling interval does not blur it. Writes one JSON document to OUT: every
checkout's timings and outcome, and the generator's own CPU time and scheduling
lag (to show it was not the bottleneck).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import sys
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import grpc
from grpc import aio

from shopmesh.order.v1 import order_service_pb2 as orders_pb
from shopmesh.order.v1 import order_service_pb2_grpc as orders_grpc
from shopmesh.payment.v1 import payment_service_pb2 as payments_pb
from shopmesh.payment.v1 import payment_service_pb2_grpc as payments_grpc
from shopmesh_bench.stats import open_loop_schedule

CALL_TIMEOUT = 30.0
FIRST_POLL, POLL_GROWTH, MAX_POLL = 0.05, 1.5, 0.5
# Separate HTTP/2 connections (grpc would otherwise share one subchannel between channels).
CHANNEL_OPTIONS = [("grpc.use_local_subchannel_pool", 1)]
ADDRESS = orders_pb.ShippingAddress(
    street="1 Analytical Way", city="London", state="Greater London", zip_code="N1 7AA", country="GB"
)


@dataclass(frozen=True)
class Spec:
    edge: str
    accounts: list[tuple[str, str]]
    rate: float
    seconds: float
    seed: int
    start_at: float  # wall clock (time.time()) of the first arrival's origin
    product: str
    price: float
    confirm_timeout: float
    channels: int = 8


@dataclass
class Checkout:
    """One checkout's timings (seconds) and outcome."""

    scheduled: float
    lag: float = 0.0
    order_s: float | None = None
    pay_s: float | None = None
    confirm_s: float | None = None
    outcome: str = "started"
    order_id: str = ""
    user_id: str = ""
    failed_polls: int = 0


class Client:
    """Round-robin over a few channels to the edge, the caller's token on every call."""

    def __init__(self, spec: Spec) -> None:
        self._channels = [aio.insecure_channel(spec.edge, options=CHANNEL_OPTIONS) for _ in range(spec.channels)]
        stubs = [
            (
                orders_grpc.OrderServiceStub(c),  # type: ignore[no-untyped-call]
                payments_grpc.PaymentServiceStub(c),  # type: ignore[no-untyped-call]
            )
            for c in self._channels
        ]
        self._stubs = itertools.cycle(stubs)

    def stubs(self) -> tuple[Any, Any]:
        return next(self._stubs)

    async def close(self) -> None:
        for channel in self._channels:
            await channel.close()


async def checkout(client: Client, spec: Spec, account: tuple[str, str], record: Checkout) -> None:
    user_id, token = account
    record.user_id = user_id
    metadata = (("authorization", f"Bearer {token}"),)
    orders, payments = client.stubs()
    stage = "order"
    try:
        started = time.perf_counter()
        order = await orders.CreateOrder(
            orders_pb.CreateOrderRequest(
                user_id=user_id,
                items=[orders_pb.OrderItemInput(product_id=spec.product, quantity=1, price=spec.price)],
                shipping_address=ADDRESS,
                request_id=str(uuid.uuid4()),
            ),
            metadata=metadata,
            timeout=CALL_TIMEOUT,
        )
        record.order_s = time.perf_counter() - started
        record.order_id = order.id
        stage = "pay"
        paid_at_wall, paid_at = time.time(), time.perf_counter()
        payment = await payments.CreatePayment(
            payments_pb.CreatePaymentRequest(
                order_id=order.id, amount=order.total_amount, currency=order.currency, payment_method_id="pm_card_visa"
            ),
            metadata=metadata,
            timeout=CALL_TIMEOUT,
        )
        record.pay_s = time.perf_counter() - paid_at
        if payment.status != payments_pb.PAYMENT_STATUS_SUCCEEDED:
            record.outcome = f"payment {payments_pb.PaymentStatus.Name(payment.status)}"
            return
        await wait_confirmed(
            orders,
            metadata,
            order.id,
            paid_at_wall=paid_at_wall,
            deadline=paid_at + spec.confirm_timeout,
            record=record,
        )
    except aio.AioRpcError as error:
        code: grpc.StatusCode = error.code()
        record.outcome = f"{stage} {code.name}"


async def wait_confirmed(
    orders: Any,
    metadata: tuple[tuple[str, str], ...],
    order_id: str,
    *,
    paid_at_wall: float,
    deadline: float,
    record: Checkout,
) -> None:
    """Poll the order with backoff until CONFIRMED, another final state, or the deadline.

    A poll that fails (the edge timing out a GetOrder under load) says nothing about the
    order: it is counted and polling goes on until the deadline.
    """
    pause, last = FIRST_POLL, "no answer"
    while time.perf_counter() < deadline:
        await asyncio.sleep(pause)
        pause = min(pause * POLL_GROWTH, MAX_POLL)
        try:
            found = await orders.GetOrder(
                orders_pb.GetOrderRequest(id=order_id), metadata=metadata, timeout=CALL_TIMEOUT
            )
        except aio.AioRpcError:
            record.failed_polls += 1
            continue
        if found.status == orders_pb.ORDER_STATUS_CONFIRMED:
            record.confirm_s = found.updated_at.ToNanoseconds() / 1e9 - paid_at_wall
            record.outcome = "confirmed"
            return
        last = orders_pb.OrderStatus.Name(found.status)
        if found.status != orders_pb.ORDER_STATUS_PENDING:
            break
    record.outcome = f"not confirmed ({last})"


async def run(spec: Spec) -> dict[str, Any]:
    client = Client(spec)
    offsets = open_loop_schedule(spec.rate, spec.seconds, spec.seed)
    records = [Checkout(scheduled=offset) for offset in offsets]
    tasks: list[asyncio.Task[None]] = []
    loop = asyncio.get_running_loop()
    # Map the agreed wall-clock start onto the loop's monotonic clock once.
    origin = loop.time() + max(0.0, spec.start_at - time.time())
    cpu_before, wall_before = os.times(), time.perf_counter()
    for index, record in enumerate(records):
        delay = origin + record.scheduled - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        record.lag = max(0.0, loop.time() - (origin + record.scheduled))
        account = spec.accounts[index % len(spec.accounts)]
        tasks.append(asyncio.create_task(checkout(client, spec, account, record)))
    sending_wall = time.perf_counter() - wall_before
    await asyncio.gather(*tasks)
    cpu_after = os.times()
    await client.close()
    return {
        "checkouts": [asdict(r) for r in records],
        "generator_cpu_seconds": (cpu_after.user + cpu_after.system) - (cpu_before.user + cpu_before.system),
        "generator_wall_seconds": time.perf_counter() - wall_before,
        "sending_wall_seconds": sending_wall,
    }


async def final_statuses(edge: str, orders: list[tuple[str, str]]) -> dict[str, int]:
    """How many of (order id, owner's token) are in each status now (`unanswered` if GetOrder fails twice)."""
    counted: dict[str, int] = {}
    async with aio.insecure_channel(edge) as channel:
        stub = orders_grpc.OrderServiceStub(channel)  # type: ignore[no-untyped-call]
        for order_id, token in orders:
            status = "unanswered"
            for _ in range(2):
                try:
                    found = await stub.GetOrder(
                        orders_pb.GetOrderRequest(id=order_id),
                        metadata=(("authorization", f"Bearer {token}"),),
                        timeout=CALL_TIMEOUT,
                    )
                except aio.AioRpcError:
                    continue
                status = orders_pb.OrderStatus.Name(found.status)
                break
            counted[status] = counted.get(status, 0) + 1
    return counted


def main() -> None:
    spec_file, out_file = Path(sys.argv[1]), Path(sys.argv[2])
    raw = json.loads(spec_file.read_text())
    raw["accounts"] = [tuple(a) for a in raw["accounts"]]
    result = asyncio.run(run(Spec(**raw)))
    out_file.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
