-- The notifications feed, the contacts it mails to, and the mails to send (issue 14).
--
-- One notification and at most one mail per consumed event: both are keyed by
-- the event id (besides the inbox, which already applies each event once).

-- A user's feed. `id` is derived from the event id (uuid v5), so a replayed
-- event can never store a second one.
CREATE TABLE notifications (
    id              uuid        PRIMARY KEY,
    source_event_id uuid        NOT NULL UNIQUE,
    user_id         uuid        NOT NULL,
    kind            text        NOT NULL CONSTRAINT notifications_kind_format CHECK (kind ~ '^[a-z_]{1,40}$'),
    title           text        NOT NULL,
    body            text        NOT NULL,
    order_id        text        NOT NULL DEFAULT '',
    reason          text        NOT NULL DEFAULT '',
    created_at      timestamptz NOT NULL DEFAULT now(),
    read_at         timestamptz
);
-- The feed pages newest first by (created_at, id); the unread filter uses the partial index.
CREATE INDEX notifications_feed ON notifications (user_id, created_at DESC, id DESC);
CREATE INDEX notifications_unread ON notifications (user_id, created_at DESC, id DESC) WHERE read_at IS NULL;

-- Where to write to a user: from UserRegistered (and later e-mail changes), or
-- from the users service's GetUserContact for a user never seen here.
-- `as_of` orders updates: an older event never overwrites a newer address.
CREATE TABLE user_contacts (
    user_id    uuid        PRIMARY KEY,
    email      text        NOT NULL,
    first_name text        NOT NULL DEFAULT '',
    as_of      timestamptz NOT NULL
);

-- Mails to send: inserted in the consuming transaction, sent by the mail
-- worker, which records the send (sent_at). Message-ID is derived from the
-- event id, so a mail sent twice (a crash between send and record) is one
-- message to the recipient's software.
CREATE TABLE outgoing_mails (
    message_id      text        PRIMARY KEY,
    source_event_id uuid        NOT NULL UNIQUE,
    user_id         uuid        NOT NULL,
    kind            text        NOT NULL,
    subject         text        NOT NULL,
    body            text        NOT NULL,
    -- NULL until known: the worker resolves it (user_contacts, then GetUserContact).
    recipient       text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text,
    sent_at         timestamptz,
    -- Given up on (the server refused it for good, or the user does not exist).
    failed_at       timestamptz
);
CREATE INDEX outgoing_mails_due ON outgoing_mails (next_attempt_at) WHERE sent_at IS NULL AND failed_at IS NULL;
