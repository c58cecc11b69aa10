-- The delivery tables every PostgreSQL service has (DESIGN §5), applied to each
-- service database before its own migrations (shopmesh_platform.migrations).
-- outbox: events written in the same transaction as the state change they
-- describe; the relay publishes them in id order and then sets published_at.
CREATE TABLE outbox (
    id           bigserial PRIMARY KEY,
    event_id     uuid        NOT NULL UNIQUE,
    topic        text        NOT NULL,
    aggregate_id text        NOT NULL,
    event_type   text        NOT NULL,
    payload      bytea       NOT NULL,
    traceparent  text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz
);
CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL;

-- inbox: ids of consumed events whose effect is committed, so a redelivered
-- event is recognised and skipped. Written in the effect's transaction.
CREATE TABLE processed_events (
    consumer     text        NOT NULL,
    event_id     uuid        NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);
