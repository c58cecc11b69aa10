"""The inbox: an insert of `<consumer>:<event id>` guards an effect against redelivery.

`record` returns True for the first delivery of an event to a consumer and
False for every later one, however many arrive at once (the unique `_id`).

With no transactions, an inbox entry and an effect elsewhere cannot commit
together, so choose by the effect:

- the effect is a transition of a Mongo aggregate: do not use this class; pass
  `cause=inbox_id(consumer, event_id)` to `TransitionLog.transition`, and the
  transition's unique `cause` is the inbox: effect and entry are one insert;
- the effect is the recording itself (a fact to keep): put it in `effect`, the
  entry is the effect;
- the effect is elsewhere and idempotent (a call with an idempotency key): do
  it first, then `record`; a crash in between repeats an idempotent call.

`CauseInbox` is the first case as an `events.inbox.Inbox`, so a MongoDB service
runs the platform's `EventConsumer`: the handler's "transaction" is the cause
string `<consumer>:<event id>`, which the handler passes as the transition's
`cause`. It records nothing itself; the transition insert is the guard, and an
`AlreadyApplied` out of the handler means a redelivery (counted as a duplicate).
A handler under it must therefore make each effect a transition carrying that
cause (or something equally idempotent): no other effect is protected.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from pymongo import ASCENDING, IndexModel
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from shopmesh_platform.docstore.ids import inbox_id
from shopmesh_platform.docstore.records import CODEC_OPTIONS, Document, utc_now_ms
from shopmesh_platform.docstore.transitions import AlreadyApplied


class Inbox:
    """Processed events per consumer, in collection `inbox`."""

    def __init__(self, database: AsyncDatabase[Document]) -> None:
        self.collection = database.get_collection("inbox", codec_options=CODEC_OPTIONS)

    def indexes(self) -> list[IndexModel]:
        # For pruning entries older than any possible redelivery.
        return [IndexModel([("processed_at", ASCENDING)], name="processed_at")]

    async def record(self, consumer: str, event_id: str, effect: Mapping[str, Any] | None = None) -> bool:
        """Insert the entry; True if this delivery is the first, False for a duplicate."""
        try:
            await self.collection.insert_one(
                {
                    "_id": inbox_id(consumer, event_id),
                    "consumer": consumer,
                    "event_id": event_id,
                    "effect": dict(effect or {}),
                    "processed_at": utc_now_ms(),
                }
            )
        except DuplicateKeyError:
            return False
        return True

    async def seen(self, consumer: str, event_id: str) -> bool:
        return await self.collection.find_one({"_id": inbox_id(consumer, event_id)}, {"_id": 1}) is not None


class CauseInbox:
    """The inbox of a consumer whose effects are transitions: the effect gets its cause (see the module)."""

    async def apply(self, consumer: str, event_id: str, effect: Callable[[str], Awaitable[None]]) -> bool:
        """Run `effect(cause)`; False when the transition of that cause already exists."""
        try:
            await effect(inbox_id(consumer, event_id))
        except AlreadyApplied:
            return False
        return True
