"""Insert-only primitives for a MongoDB-wire store (FerretDB locally, MongoDB in production).

FerretDB 1.24 applies an update by reading the document and rewriting it whole
by `_id`, so two concurrent updates of one document can lose either one. An
insert guarded by a unique `_id` or unique index is atomic on FerretDB and on
MongoDB alike, so every guarantee here rests on such an insert:

- `TransitionLog`: each state transition of an aggregate is a new document
  `_id = <aggregate>:<version>` carrying the new state and its event. Only one
  writer can insert version n+1 (the guard), and the document is the outbox entry.
  A transition's `cause` (unique) is the inbox of the effect that made it.
- `MongoOutboxStore`: the relay's view of the log. It finds transitions whose
  `published` flag (inserted false with the transition) is still false, records
  a publish by inserting a `published` marker, then sets the flag (a derived
  hint, never a guard: nothing else writes a transition after its insert).
- `SlotLease`: one relay at a time through time-slot documents `<service>:<slot>`.
- `Inbox`: an insert of `<consumer>:<event id>` guards an effect; `CauseInbox`
  is the platform consumer's inbox when the effect is a transition with that cause.
- `CurrentStateCache`: the one document updated in place, a derived cache of the
  latest transition per aggregate, rebuildable from the log and never trusted;
  it lifts the state fields listings query to top-level fields.
- Queries: FerretDB 1.24 hands only equality on top-level fields to PostgreSQL
  and decodes the whole collection for anything else, so every hot query is
  such an equality on the first key of a declared index.
- `MongoRelay`: lease + store + idempotent producer.

`ensure_indexes` creates every index idempotently at start.
"""

from shopmesh_platform.docstore.cache import CurrentStateCache
from shopmesh_platform.docstore.inbox import CauseInbox, Inbox
from shopmesh_platform.docstore.lease import LeaseLost, LeaseTiming, SlotLease
from shopmesh_platform.docstore.outbox import MongoOutboxStore
from shopmesh_platform.docstore.records import NextState, OutboxEvent, PendingEvent, Transition, outbox_event
from shopmesh_platform.docstore.relay import MongoRelay
from shopmesh_platform.docstore.schema import ensure_indexes
from shopmesh_platform.docstore.transitions import (
    AlreadyApplied,
    TransitionConflict,
    TransitionError,
    TransitionLog,
    TransitionRefused,
)

__all__ = [
    "AlreadyApplied",
    "CauseInbox",
    "CurrentStateCache",
    "Inbox",
    "LeaseLost",
    "LeaseTiming",
    "MongoOutboxStore",
    "MongoRelay",
    "NextState",
    "OutboxEvent",
    "PendingEvent",
    "SlotLease",
    "Transition",
    "TransitionConflict",
    "TransitionError",
    "TransitionLog",
    "TransitionRefused",
    "ensure_indexes",
    "outbox_event",
]
