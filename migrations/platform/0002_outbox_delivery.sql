-- Outbox delivery bookkeeping (shopmesh_platform.events).
-- A row the relay cannot publish (undeclared topic, too large, refused by the
-- broker) is retried a bounded number of times, then parked: it no longer
-- blocks the rows behind it and stays visible to operators (`make dlq`).
ALTER TABLE outbox
    ADD COLUMN attempts   integer NOT NULL DEFAULT 0,
    ADD COLUMN last_error text,
    ADD COLUMN parked_at  timestamptz;

-- The relay's work list: neither published nor parked, in id order. No commit-
-- order column is needed: append_event takes a per-aggregate transaction lock
-- before inserting, so two transactions writing one aggregate's events are
-- serialized and that aggregate's ids follow commit order.
DROP INDEX outbox_unpublished;
CREATE INDEX outbox_pending ON outbox (id) WHERE published_at IS NULL AND parked_at IS NULL;
CREATE INDEX outbox_parked ON outbox (id) WHERE published_at IS NULL AND parked_at IS NOT NULL;
