-- Wake the outbox relay when events commit (shopmesh_platform.events.relay).
-- NOTIFY is delivered at commit and only if the transaction commits; a
-- transaction's notifications on one channel with one payload fold into one.
-- The relay still polls, so a notification nobody heard (the relay between
-- connections, or standing by) costs only latency, never an event.
CREATE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('outbox', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();
