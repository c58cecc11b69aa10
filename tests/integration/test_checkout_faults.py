"""The checkout saga under races and crashes, on the real stack: whatever fails, each order
ends in one story (see checkout_support): CONFIRMED with its stock committed, or CANCELLED
with any payment refunded and its stock released — never a mix, never two charges.

- confirmation racing expiry, 20 orders at once;
- payments SIGKILLed between creating and confirming a PaymentIntent, and with the
  charge made and its webhook in flight: the reconciler finishes after the restart;
- orders, then inventory, SIGKILLed in the middle of a checkout;
- Stripe unreachable: UNAVAILABLE fast once the breaker opens, no order stuck after;
- the README's curl session, from an order to its payment to CONFIRMED.

Crashes happen at exact points: payments' Stripe calls go through a StripeGate that
holds the first confirmation (no test hook in the service).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import shlex
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from shopmesh_inventory.ledger_check import check
from shopmesh_stack.settings import REPO
from shopmesh_stack.stack import Stack
from tests.integration.checkout_support import (
    CANCELLED,
    CONFIRMED,
    SETTLE_TIMEOUT,
    attempts_of,
    ensure_running,
    final_order_status,
    kill,
    payment_of,
    payments_through,
    start,
    story_of,
    swap_payments,
)
from tests.integration.conftest import TEST_SERVICE_ENV
from tests.integration.helpers import HttpReply
from tests.integration.inventory_client import admin_account, counters, create_product, ledger_rows
from tests.integration.orders_client import orders_domain, place
from tests.integration.payments_support import metric
from tests.integration.stripe_gate import GateMode, StripeGate
from tests.integration.users_client import Account, call, register, register_patiently, unique_email
from tests.polling import eventually, wait_for

EXPIRY = float(TEST_SERVICE_ENV["SHOPMESH_ORDERS_EXPIRY_SECONDS"])
SHIRTS, SHIRT_PRICE, TWO_SHIRTS_MINOR = "prod-123", 29.99, 5998
RACES = 20
# Each race pays this long before its order's deadline: from well before (the payment
# usually wins) to the deadline itself (the expiry usually wins).
RACE_LEADS = [2.5 * (RACES - 1 - i) / (RACES - 1) for i in range(RACES)]
# The payments instance that is killed holds each payment this long (the Stripe timeout
# is 3 s), so the restarted one's reconciler takes over soon instead of after 15 s.
CRASHED_LEASE_SECONDS = "5"


@pytest.fixture(scope="module")
def admin(stack: Stack) -> Account:
    return admin_account(stack)


def pay(stack: Stack, account: Account, order: dict[str, Any]) -> HttpReply:
    body = {
        "orderId": order["id"],
        "amount": order["totalAmount"],
        "currency": "USD",
        "paymentMethodId": "pm_card_visa",
    }
    return call(stack, "POST", "/api/v1/payments", account, body)


def place_two_shirts(stack: Stack, account: Account) -> dict[str, Any]:
    return place(stack, account, [(SHIRTS, 2, SHIRT_PRICE)])


def reason(reply: HttpReply) -> str:
    return next((str(d["reason"]) for d in reply.json().get("details", []) if "reason" in d), "")


async def ledger_is_consistent(stack: Stack) -> None:
    report = await check(stack.postgres.dsn("inventory"))
    assert report.consistent, report.mismatches


async def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def deadline_of(order: dict[str, Any]) -> dt.datetime:
    return dt.datetime.fromisoformat(order["reservationExpiresAt"].replace("Z", "+00:00"))


# 1. Confirmation racing expiry


async def test_confirmation_racing_expiry_ends_confirmed_or_refunded_never_a_mix(stack: Stack, admin: Account) -> None:
    created = await asyncio.to_thread(create_product, stack, admin, stock=100, price=5.0)
    assert created.status == 200, created.body
    product = created.json()["id"]
    loop = asyncio.get_running_loop()
    # One thread per race, so no payment waits for a free worker at its moment.
    with ThreadPoolExecutor(RACES) as pool:
        customers = [await asyncio.to_thread(register_patiently, stack) for _ in range(RACES // 5)]
        owners = [customer for customer in customers for _ in range(5)]  # five unpaid orders each at most
        orders = await asyncio.gather(
            *(loop.run_in_executor(pool, place, stack, owner, [(product, 1, 5.0)]) for owner in owners)
        )
        async with orders_domain(stack) as (replica, _):

            async def race(owner: Account, order: dict[str, Any], lead: float) -> HttpReply:
                deadline = deadline_of(order)
                pay_at = deadline - dt.timedelta(seconds=lead)
                await eventually(utc_now, lambda now: now >= pay_at, timeout=EXPIRY + 60, interval=0.02)
                paying = loop.run_in_executor(pool, pay, stack, owner, order)
                await eventually(utc_now, lambda now: now >= deadline, timeout=EXPIRY + 60, interval=0.02)
                # At the deadline a second replica expires it too, beside the service's own loop.
                await replica.expire(order["id"])
                return await paying

            replies = await asyncio.gather(
                *(race(owner, order, lead) for owner, order, lead in zip(owners, orders, RACE_LEADS, strict=True))
            )
    for reply in replies:
        # Paid, or refused because the order had expired already (then nothing is charged).
        assert reply.status == 200 or (reply.status == 400 and reason(reply) == "ORDER_NOT_PENDING"), reply.body
        if reply.status == 200:
            assert reply.json()["status"] == "PAYMENT_STATUS_SUCCEEDED", reply.body
    stories = await asyncio.gather(*(story_of(stack, order["id"], product, 1, 500) for order in orders))
    for reply, story in zip(replies, stories, strict=True):
        # A payment that was taken ends confirmed or refunded; a refused one charged nothing.
        expected = {CONFIRMED: "SUCCEEDED", CANCELLED: "REFUNDED"} if reply.status == 200 else {CANCELLED: None}
        assert expected.get(story.order, "mix") == story.payment, (reply.body, story)
    outcomes = Counter((story.order, story.payment) for story in stories)
    assert sum(reply.status == 200 for reply in replies) >= 1, f"no payment got in before expiry: {outcomes}"
    on_hand, reserved = await counters(stack, product)
    assert (on_hand, reserved) == (100 - outcomes[CONFIRMED, "SUCCEEDED"], 0), outcomes
    await ledger_is_consistent(stack)


# 2. payments SIGKILLed mid-payment


def localstripe_log_size(stack: Stack) -> int:
    return stack.localstripe.process.spec.log_file.stat().st_size


def webhook_failed_since(stack: Stack, offset: int) -> bool:
    """Whether localstripe reported a payment_intent.succeeded webhook it could not deliver after `offset`."""
    with stack.localstripe.process.spec.log_file.open("rb") as log:
        log.seek(offset)
        return b'webhook "payment_intent.succeeded" failed' in log.read()


@pytest.mark.stops_components
@pytest.mark.parametrize(
    ("mode", "reconciled"),
    [(GateMode.DROP, ["retrieve", "confirm"]), (GateMode.ANSWER_HELD, ["retrieve"])],
    ids=["between-create-and-confirm", "charged-with-webhook-in-flight"],
)
async def test_payments_killed_mid_payment_is_finished_by_the_reconciler_with_one_charge(
    stack: Stack, mode: GateMode, reconciled: list[str]
) -> None:
    account = await asyncio.to_thread(register, stack)
    gate = StripeGate(stack.localstripe.api_base, mode).open()
    try:
        crashing = payments_through(stack, gate.url, SHOPMESH_PAYMENTS_LEASE_SECONDS=CRASHED_LEASE_SECONDS)
        await asyncio.to_thread(swap_payments, stack, crashing)
        order = await asyncio.to_thread(place_two_shirts, stack, account)
        paying = asyncio.ensure_future(asyncio.to_thread(pay, stack, account, order))
        # DROP: the PaymentIntent is created (and its id recorded), its confirmation never reaches Stripe.
        # ANSWER_HELD: Stripe charged it; payments has not heard back.
        assert await asyncio.to_thread(gate.confirm_held.wait, 60), "no confirmation reached Stripe"
        offset = localstripe_log_size(stack)
        await asyncio.to_thread(kill, stack, "payments")
        assert (await paying).status == 503  # the caller learns the payment's fate by reading it later
        if mode is GateMode.ANSWER_HELD:
            # localstripe sends its webhook once, a second after the charge, and never again:
            # it reaches the edge while payments is dead, so only the reconciler is left.
            await asyncio.to_thread(
                wait_for, lambda: webhook_failed_since(stack, offset), 30, "localstripe's webhook failing"
            )
        payment = await payment_of(stack, order["id"])
        assert payment is not None and payment["status"] == "PENDING" and payment["stripe_payment_intent_id"]
        await asyncio.to_thread(start, stack, stack.services["payments"])
    finally:
        gate.close()
        await asyncio.to_thread(ensure_running, stack, "payments")
    story = await story_of(stack, order["id"], SHIRTS, 2, TWO_SHIRTS_MINOR)
    # Settled (the order may have expired meanwhile: then it was refunded), with one charge.
    assert (story.intents, story.payment in ("SUCCEEDED", "REFUNDED")) == (1, True), story
    # The crashed call left no attempt behind; the restarted reconciler re-read the PaymentIntent
    # and (DROP) confirmed it. A webhook settling it instead would have left no "retrieve".
    assert await attempts_of(stack, payment["id"]) == ["create", *reconciled]
    await ledger_is_consistent(stack)


# 3. orders, then inventory, SIGKILLed mid-checkout


@pytest.mark.stops_components
async def test_orders_then_inventory_killed_mid_checkout_still_settle_and_the_ledger_is_exact(stack: Stack) -> None:
    account = await asyncio.to_thread(register, stack)
    gate = StripeGate(stack.localstripe.api_base, GateMode.UNTIL_RELEASED).open()
    try:
        await asyncio.to_thread(swap_payments, stack, payments_through(stack, gate.url))
        order = await asyncio.to_thread(place_two_shirts, stack, account)
        paying = asyncio.ensure_future(asyncio.to_thread(pay, stack, account, order))
        assert await asyncio.to_thread(gate.confirm_held.wait, 60), "no confirmation reached Stripe"
        # Orders has said PENDING to payments; it dies before it can hear how the payment ends.
        await asyncio.to_thread(kill, stack, "orders")
        gate.release()
        paid = await paying
        assert paid.status == 200 and paid.json()["status"] == "PAYMENT_STATUS_SUCCEEDED", paid.body
        # Inventory dies holding the reservation, before any confirmation (or expiry) reaches it.
        await asyncio.to_thread(kill, stack, "inventory")
        await asyncio.to_thread(start, stack, stack.services["orders"])
        # Orders decides the order while inventory is down; the stock waits for inventory.
        status = await final_order_status(stack, order["id"])
        assert await ledger_rows(stack, order["id"]) == [(SHIRTS, "reserve", 0, 2)]
        await asyncio.to_thread(start, stack, stack.services["inventory"])
    finally:
        gate.close()
        for service in ("orders", "inventory"):
            await asyncio.to_thread(ensure_running, stack, service)
        await asyncio.to_thread(swap_payments, stack, stack.services["payments"])
    story = await story_of(stack, order["id"], SHIRTS, 2, TWO_SHIRTS_MINOR)
    assert story.order == status and story.intents == 1, story
    # What `make ledger-check` runs: every product's stock against its ledger.
    checked = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "shopmesh_inventory.ledger_check", "--dsn", stack.postgres.dsn("inventory")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert checked.returncode == 0 and "stock ledger consistent" in checked.stdout, checked.stdout


# 4. Stripe unreachable


def breaker_state(stack: Stack) -> float | None:
    return metric(stack, "payment_provider_breaker_state")


@pytest.mark.stops_components
async def test_stripe_unreachable_answers_unavailable_fast_and_no_order_stays_stuck(stack: Stack) -> None:
    account = await asyncio.to_thread(register, stack)
    orders = [await asyncio.to_thread(place_two_shirts, stack, account) for _ in range(4)]
    assert await asyncio.to_thread(breaker_state, stack) == 0.0
    await asyncio.to_thread(stack.stop, stack.localstripe)
    try:
        for order in orders[:3]:
            refused = await asyncio.to_thread(pay, stack, account, order)
            assert (refused.status, reason(refused)) == (503, "PAYMENT_PROVIDER_UNAVAILABLE"), refused.body
        await eventually(lambda: asyncio.to_thread(breaker_state, stack), lambda s: s == 2.0, timeout=20)
        started = time.monotonic()
        fast = await asyncio.to_thread(pay, stack, account, orders[3])
        took = time.monotonic() - started
        assert (fast.status, reason(fast)) == (503, "PAYMENT_PROVIDER_UNAVAILABLE"), fast.body
        assert took < 2.0, f"an open breaker answered after {took:.1f}s"
    finally:
        # Started again, localstripe gets the edge's webhook registered again.
        await asyncio.to_thread(stack.start, stack.localstripe)
    await eventually(lambda: asyncio.to_thread(breaker_state, stack), lambda s: s == 0.0, timeout=30)
    # Every payment refused meanwhile is finished by the reconciler: none stays PENDING.
    stories = await asyncio.gather(*(story_of(stack, o["id"], SHIRTS, 2, TWO_SHIRTS_MINOR) for o in orders))
    assert all(s.intents == 1 and s.payment in ("SUCCEEDED", "REFUNDED") for s in stories), stories
    await ledger_is_consistent(stack)


# 5. The README's curl session


def readme_commands(heading: str) -> list[str]:
    """The shell commands of the first code block under a README heading (comment lines left out)."""
    section = (REPO / "README.md").read_text().split(f"### {heading}\n", 1)[1]
    block = section.split("```", 2)[1]
    commands: list[str] = []
    current = ""
    for line in block.splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        current = f"{current}\n{line}" if current else line
        try:
            complete = not current.endswith("\\") and bool(shlex.split(current, comments=True))
        except ValueError:  # a quote still open: the command goes on
            complete = False
        if complete:
            commands.append(current)
            current = ""
    return commands


class Shell:
    """Runs README commands with bash, keeping the variables they assign (REQ=..., TOKEN=...)."""

    def __init__(self, edge_url: str) -> None:
        self.env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "EDGE": edge_url}

    def run(self, command: str) -> Any:
        name, equals, _ = command.partition("=")
        assigns = bool(equals) and name.isidentifier() and name.isupper()
        script = f'{command}\nprintf %s "${name}"' if assigns else command
        done = subprocess.run(
            ["bash", "-c", script], env=self.env, capture_output=True, text=True, timeout=60, check=False
        )
        assert done.returncode == 0, (command, done.stderr)
        if assigns:
            self.env[name] = done.stdout
            return done.stdout
        return json.loads(done.stdout)


@pytest.fixture
def shell(stack: Stack) -> Iterator[Shell]:
    yield Shell(stack.settings.edge_url)


async def test_the_readme_curl_session_goes_from_order_to_payment_to_confirmed(stack: Stack, shell: Shell) -> None:
    email = unique_email("readme")
    session = readme_commands("A session with curl: register, log in, read your profile")
    registered = shell.run(next(c for c in session if "/users/register" in c).replace("ada@example.com", email))
    assert registered["user"]["email"] == email, registered
    assert shell.run(next(c for c in session if c.startswith("TOKEN=")).replace("ada@example.com", email))
    shell.env["ME"] = shell.run(next(c for c in session if "/users/me " in c))["id"]

    ordering = readme_commands("Place an order, follow it, cancel it")
    last = next(i for i, c in enumerate(ordering) if "ORDER_STATUS_CONFIRMED" in c)
    order_id = ""
    for command in ordering[:last]:
        answer = shell.run(command.replace("<id>", order_id))
        if "POST $EDGE/api/v1/orders " in command:
            order_id = answer["id"]
            assert (answer["status"], answer["totalAmount"]) == ("ORDER_STATUS_PENDING", 59.98), answer
        if "POST $EDGE/api/v1/payments" in command:
            assert (answer["status"], answer["amount"]) == ("PAYMENT_STATUS_SUCCEEDED", 59.98), answer
    assert order_id, "the README places no order"

    async def read_order() -> Any:
        return await asyncio.to_thread(shell.run, ordering[last].replace("<id>", order_id))

    confirmed = await eventually(
        read_order, lambda o: o.get("status") == "ORDER_STATUS_CONFIRMED", timeout=SETTLE_TIMEOUT, interval=0.3
    )
    assert confirmed["id"] == order_id
    committed = [(SHIRTS, "reserve", 0, 2), (SHIRTS, "commit", -2, -2)]
    await eventually(lambda: ledger_rows(stack, order_id), lambda rows: rows == committed, timeout=SETTLE_TIMEOUT)
