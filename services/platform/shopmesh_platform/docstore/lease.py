"""One holder at a time (e.g. one relay per service) through time-slot lease documents.

Time is cut into slots of `lease_seconds`; slot = floor(unix time / lease_seconds).
Holding slot s means having inserted `_id = <service>:<slot>` (unique: one holder
per slot). A contender only ever claims the slot it is in; if the insert fails
it stands by and tries again a little later. The holder claims s+1
`renew_before_end` before s ends; if that insert fails (a contender got there),
or it stops renewing (crash, partition), it loses the lease when s ends, and a
contender's next attempt in s+1 wins. Takeover after a crash therefore takes at
most `lease_seconds + renew_before_end + retry_interval`.

Clocks: holders and contenders compare unix times from different machines, so
they must agree within `clock_margin` (NTP keeps them within milliseconds; the
default margin is a second). The holder stops acting `clock_margin` before its
last slot ends, so its time never overlaps a successor's whose clock runs ahead
by less than that. Work already in flight at that moment may still finish, so
what the holder guards must tolerate a rare duplicate (the relay's is: consumers
deduplicate by event id).

A graceful stop deletes the holder's own current and future slots so a
contender takes over at its next attempt. Old slot documents are deleted by the
holder (FerretDB has no TTL indexes).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from pymongo import ASCENDING, IndexModel
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError, PyMongoError

from shopmesh_platform.docstore.ids import lease_id, slot_end, slot_of
from shopmesh_platform.docstore.records import CODEC_OPTIONS, Document, utc_now_ms

# Slot documents older than this many slots are deleted by the holder.
KEEP_SLOTS = 100


class LeaseLost(Exception):
    """The holder could not renew: it must stop acting before its slot ends."""


@dataclass(frozen=True)
class LeaseTiming:
    lease_seconds: float = 10.0
    renew_before_end: float = 3.0
    clock_margin: float = 1.0
    retry_interval: float = 1.0

    def __post_init__(self) -> None:
        if not 0 < self.clock_margin < self.renew_before_end < self.lease_seconds:
            raise ValueError("lease timing needs 0 < clock_margin < renew_before_end < lease_seconds")
        if self.retry_interval <= 0:
            raise ValueError("retry_interval must be > 0")


class SlotLease:
    """The lease of `service` in collection `leases`, held under the id `holder`."""

    def __init__(
        self,
        database: AsyncDatabase[Document],
        service: str,
        *,
        holder: str | None = None,
        timing: LeaseTiming = LeaseTiming(),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.service = service
        self.holder = holder or f"{service}-{uuid.uuid4()}"
        self.timing = timing
        self._clock = clock
        self._last_slot: int | None = None
        self.collection = database.get_collection("leases", codec_options=CODEC_OPTIONS)

    def indexes(self) -> list[IndexModel]:
        return [IndexModel([("service", ASCENDING), ("slot", ASCENDING)], name="service_slot")]

    def valid(self) -> bool:
        """True while this holder may act: before its last slot's end, less the clock margin."""
        if self._last_slot is None:
            return False
        return self._clock() < slot_end(self._last_slot, self.timing.lease_seconds) - self.timing.clock_margin

    async def try_claim(self, slot: int) -> bool:
        """Insert the slot's document; True if this holder has it (also when a retried insert had landed)."""
        try:
            await self.collection.insert_one(
                {
                    "_id": lease_id(self.service, slot),
                    "service": self.service,
                    "slot": slot,
                    "holder": self.holder,
                    "claimed_at": utc_now_ms(),
                }
            )
        except DuplicateKeyError:
            document = await self.collection.find_one({"_id": lease_id(self.service, slot)})
            return document is not None and document["holder"] == self.holder
        return True

    async def acquire(self) -> None:
        """Wait until this holder has the current slot."""
        while True:
            slot = slot_of(self._clock(), self.timing.lease_seconds)
            if await self.try_claim(slot):
                self._last_slot = slot
                await self._delete_old_slots(slot)
                return
            await asyncio.sleep(self.timing.retry_interval)

    async def keep(self) -> None:
        """Renew slot by slot; raises `LeaseLost` once the last held slot is (nearly) over."""
        timing = self.timing
        while True:
            assert self._last_slot is not None, "keep() before acquire()"
            ends = slot_end(self._last_slot, timing.lease_seconds)
            await asyncio.sleep(max(0.0, ends - timing.renew_before_end - self._clock()))
            if await self.try_claim(self._last_slot + 1):
                self._last_slot += 1
                continue
            await asyncio.sleep(max(0.0, ends - timing.clock_margin - self._clock()))
            lost = self._last_slot + 1
            self._last_slot = None
            raise LeaseLost(f"{self.service}: slot {lost} taken by another holder")

    async def release(self) -> None:
        """Give up now (graceful stop): delete this holder's current and future slots."""
        if self._last_slot is None:
            return
        self._last_slot = None
        await self.collection.delete_many({"service": self.service, "holder": self.holder})

    async def run_while_held(self, body: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Wait for the lease and run `body` while holding it; when it is lost, cancel `body` and contend again.

        Returns (or raises) when `body` does; the lease is then released, as it is on cancellation.
        """
        while True:
            await self.acquire()
            keeper = asyncio.create_task(self.keep(), name=f"{self.service} lease")
            worker = asyncio.create_task(body(), name=f"{self.service} lease holder")
            try:
                await asyncio.wait({keeper, worker}, return_when=asyncio.FIRST_COMPLETED)
            except asyncio.CancelledError:
                await _cancel(keeper, worker)
                await self._release_quietly()
                raise
            if worker.done():
                await _cancel(keeper)
                await self._release_quietly()
                worker.result()  # re-raises what the body raised
                return
            await _cancel(worker)
            error = keeper.exception()
            if not isinstance(error, LeaseLost):
                await self._release_quietly()
                raise error or RuntimeError("lease keeper stopped")
            # Lost: stand by and contend again.

    async def _release_quietly(self) -> None:
        with contextlib.suppress(PyMongoError):
            await self.release()

    async def _delete_old_slots(self, slot: int) -> None:
        await self.collection.delete_many({"service": self.service, "slot": {"$lt": slot - KEEP_SLOTS}})


async def _cancel(*tasks: asyncio.Task[None]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
