"""localstripe as the stack runs it (scripts/localstripe_launcher.py): the store is
written at most once per request (requests that wait together share one write), and
whatever it answered is still there after a SIGKILL.

A second emulator of its own (free port, temporary store), so the shared stack's
localstripe is never killed.
"""

from __future__ import annotations

import os
import pickle
import re
import signal
import subprocess
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import stripe

from shopmesh_stack.components import LOCALSTRIPE_API_KEY, free_port
from shopmesh_stack.settings import REPO
from shopmesh_stack.stack import Stack
from tests.polling import wait_for


class Emulator:
    def __init__(self, python: Path, store: Path) -> None:
        self.python = python
        self.store = store
        self.port = free_port()
        self.log = store.with_suffix(".log")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def client(self) -> stripe.StripeClient:
        return stripe.StripeClient(
            LOCALSTRIPE_API_KEY,
            base_addresses={"api": f"http://127.0.0.1:{self.port}"},
            max_network_retries=0,
        )

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [
                    str(self.python),
                    str(REPO / "scripts" / "localstripe_launcher.py"),
                    *("--port", str(self.port), "--store", str(self.store)),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

        def answers() -> bool:
            try:
                self.client.v1.customers.list(params={"limit": 1})
            except stripe.APIConnectionError:
                return False
            return True

        wait_for(answers, 60, "localstripe answering")

    def store_writes(self) -> int:
        return self.log.read_text().count("store written:")

    def requests_per_write(self) -> list[int]:
        return [int(n) for n in re.findall(r"store written: .* for (\d+) requests", self.log.read_text())]

    def kill(self) -> None:
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)


@pytest.fixture
def emulator(stack: Stack, tmp_path: Path) -> Iterator[Emulator]:
    emulator = Emulator(stack.installed.localstripe_python, tmp_path / "state.pickle")
    emulator.start()
    try:
        yield emulator
    finally:
        if emulator.process is not None and emulator.process.poll() is None:
            emulator.kill()


def test_an_answered_payment_survives_a_sigkill(emulator: Emulator) -> None:
    client = emulator.client
    intent = client.v1.payment_intents.create(
        params={"amount": 4200, "currency": "usd", "payment_method": "pm_card_visa", "metadata": {"order": "o-1"}}
    )
    # One request that adds a charge, a balance transaction and events besides changing the intent.
    confirmed = client.v1.payment_intents.confirm(intent.id)
    assert confirmed.status == "succeeded"
    refund = client.v1.refunds.create(params={"payment_intent": intent.id, "amount": 1000})
    emulator.kill()
    written = emulator.store_writes()

    emulator.start()
    # Loading the store writes nothing (it used to rewrite the file once per object loaded).
    assert emulator.store_writes() == written
    client = emulator.client
    again = client.v1.payment_intents.retrieve(intent.id)
    assert (again.status, again.amount, again.metadata["order"]) == ("succeeded", 4200, "o-1")
    listed = client.v1.refunds.list(params={"payment_intent": intent.id})
    assert [(item.id, item.amount) for item in listed.data] == [(refund.id, 1000)]


def test_a_request_writes_the_store_once(emulator: Emulator) -> None:
    """localstripe alone would write it once per object the request adds, and once more at its end."""
    client = emulator.client
    intent = client.v1.payment_intents.create(
        params={"amount": 4200, "currency": "usd", "payment_method": "pm_card_visa"}
    )
    written = emulator.store_writes()
    assert written >= 1
    confirmed = client.v1.payment_intents.confirm(intent.id)
    assert confirmed.status == "succeeded"
    assert emulator.store_writes() == written + 1
    client.v1.payment_intents.retrieve(intent.id)
    client.v1.payment_intents.list(params={"limit": 3})
    assert emulator.store_writes() == written + 1, "a read wrote the store"
    assert emulator.store.stat().st_size > 0


def test_payment_intents_are_listed_like_stripe_newest_first_and_by_created(emulator: Emulator) -> None:
    client = emulator.client
    made = [
        client.v1.payment_intents.create(
            params={"amount": 100 + n, "currency": "usd", "payment_method": "pm_card_visa"}
        )
        for n in range(3)
    ]
    since = min(intent.created for intent in made)
    listed = client.v1.payment_intents.list(params={"limit": 2, "created": {"gte": since}})
    assert [intent.id for intent in listed.data] == [made[2].id, made[1].id] and listed.has_more
    rest = client.v1.payment_intents.list(params={"limit": 2, "created": {"gte": since}, "starting_after": made[1].id})
    assert [intent.id for intent in rest.data] == [made[0].id] and not rest.has_more
    assert client.v1.payment_intents.list(params={"created": {"gt": since + 3600}}).data == []
    assert len(client.v1.payment_intents.list(params={"created": {"lte": since + 3600, "gte": since}}).data) == 3
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.payment_intents.list(params={"created": {"gte": "yesterday"}})  # type: ignore[arg-type]


def test_an_idempotency_key_gets_its_first_answer_again_even_after_a_sigkill(emulator: Emulator) -> None:
    client = emulator.client
    params: dict[str, Any] = {"amount": 700, "currency": "usd", "payment_method": "pm_card_visa"}
    params["metadata"] = {"order": "o-7"}
    first = client.v1.payment_intents.create(params=params, options={"idempotency_key": "order-o-7-create"})  # type: ignore[arg-type]
    again = client.v1.payment_intents.create(params=params, options={"idempotency_key": "order-o-7-create"})  # type: ignore[arg-type]
    assert again.id == first.id
    assert again.last_response is not None and again.last_response.headers.get("Idempotent-Replayed") == "true"
    with pytest.raises(stripe.IdempotencyError):
        client.v1.payment_intents.create(
            params=dict(params, amount=701),  # type: ignore[arg-type]
            options={"idempotency_key": "order-o-7-create"},
        )
    declined: dict[str, Any] = {
        "amount": 500,
        "currency": "usd",
        "payment_method": "pm_card_chargeCustomerFail",
        "confirm": True,
    }
    for _ in range(2):
        with pytest.raises(stripe.CardError):
            client.v1.payment_intents.create(params=declined, options={"idempotency_key": "declined-once"})  # type: ignore[arg-type]
    emulator.kill()

    emulator.start()
    client = emulator.client
    after = client.v1.payment_intents.create(params=params, options={"idempotency_key": "order-o-7-create"})  # type: ignore[arg-type]
    assert after.id == first.id
    listed = client.v1.payment_intents.list(params={"limit": 100})
    assert [intent.id for intent in listed.data].count(first.id) == 1
    assert sum(1 for intent in listed.data if intent.amount == 500) == 1


def test_requests_that_wait_together_share_one_write_and_all_survive_a_sigkill(stack: Stack, tmp_path: Path) -> None:
    """Group commit: each answer still waits for a write made after its change, but not one write each.

    The store starts large (a padding entry that takes a while to pickle, as thousands of
    payments do), so requests arriving together wait while a write runs and share the next.
    """
    store = tmp_path / "state.pickle"
    with open(store, "wb") as f:
        pickle.dump({"padding:bench": list(range(1_500_000))}, f)
    emulator = Emulator(stack.installed.localstripe_python, store)
    emulator.start()
    try:
        clients = 16
        together = threading.Barrier(clients)

        def create(n: int) -> str:
            client = emulator.client
            together.wait(timeout=30)
            intent = client.v1.payment_intents.create(
                params={"amount": 1000 + n, "currency": "usd", "payment_method": "pm_card_visa"}
            )
            return intent.id

        with ThreadPoolExecutor(clients) as pool:
            answered = list(pool.map(create, range(clients)))
        shared = emulator.requests_per_write()
        assert sum(shared) == clients, shared
        assert len(shared) < clients and max(shared) >= 2, f"no write was shared: {shared}"
        emulator.kill()

        emulator.start()
        client = emulator.client
        kept = {intent.id: intent.amount for intent in client.v1.payment_intents.list(params={"limit": 100}).data}
        assert {kept.get(intent) for intent in answered} == set(range(1000, 1000 + clients)) and len(kept) == clients
    finally:
        if emulator.process is not None and emulator.process.poll() is None:
            emulator.kill()
