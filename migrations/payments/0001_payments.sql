-- Payments, their Stripe attempts, refunds and processed webhooks (DESIGN §5, issue 13).
-- Amounts are integer minor units. The outbox and inbox come from migrations/platform.

-- One row per order: the unique order id is what guarantees at most one
-- PaymentIntent per order (Stripe emulators ignore idempotency keys; Stripe
-- keeps them only 24 h). The row is inserted before Stripe is called, so a
-- crash at any point leaves a record for the reconciler.
CREATE TABLE payments (
    id                        uuid        PRIMARY KEY,
    order_id                  uuid        NOT NULL,
    user_id                   uuid        NOT NULL,
    -- Recorded once Stripe created the PaymentIntent; NULL until then.
    stripe_payment_intent_id  text,
    amount_minor              bigint      NOT NULL,
    currency                  text        NOT NULL,
    -- The contract's PaymentStatus values (shopmesh.payment.v1), without the prefix.
    status                    text        NOT NULL DEFAULT 'PENDING',
    failure_reason            text,
    payment_method            text        NOT NULL,
    -- Filled when the provider reports them.
    provider_fee_minor        bigint,
    net_amount_minor          bigint,
    amount_refunded_minor     bigint      NOT NULL DEFAULT 0,
    client_secret             text,
    -- The client's AIP-155 idempotency key: a retry with it gets this payment back.
    request_id                uuid,
    metadata                  jsonb       NOT NULL DEFAULT '{}'::jsonb,
    -- Whoever drives the payment with Stripe (the API call, or the reconciler)
    -- holds it until then; the reconciler takes only payments nobody holds.
    lease_until               timestamptz,
    created_at                timestamptz NOT NULL DEFAULT now(),
    updated_at                timestamptz NOT NULL DEFAULT now(),
    -- When the payment reached a final outcome (succeeded or failed).
    processed_at              timestamptz,
    CONSTRAINT payments_order_unique UNIQUE (order_id),
    CONSTRAINT payments_stripe_payment_intent_unique UNIQUE (stripe_payment_intent_id),
    CONSTRAINT payments_amount_positive CHECK (amount_minor > 0),
    CONSTRAINT payments_currency_format CHECK (currency ~ '^[A-Z]{3}$'),
    CONSTRAINT payments_status_known CHECK (
        status IN ('PENDING', 'REQUIRES_ACTION', 'SUCCEEDED', 'FAILED', 'REFUNDED', 'PARTIALLY_REFUNDED')
    ),
    CONSTRAINT payments_refunded_within_amount CHECK (
        amount_refunded_minor >= 0 AND amount_refunded_minor <= amount_minor
    )
);
-- The reconciler's work list: payments not final yet.
CREATE INDEX payments_unsettled ON payments (updated_at) WHERE status IN ('PENDING', 'REQUIRES_ACTION');

-- Every call made to Stripe for a payment, with its outcome (audit and debugging).
CREATE TABLE payment_attempts (
    id              bigserial   PRIMARY KEY,
    payment_id      uuid        NOT NULL REFERENCES payments (id) ON DELETE CASCADE,
    -- create, confirm, retrieve, find
    operation       text        NOT NULL,
    idempotency_key text,
    -- ok, declined, unavailable
    outcome         text        NOT NULL,
    error_code      text,
    provider_status text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT payment_attempts_outcome_known CHECK (outcome IN ('ok', 'declined', 'unavailable'))
);
CREATE INDEX payment_attempts_payment ON payment_attempts (payment_id);

CREATE TABLE refunds (
    id                uuid        PRIMARY KEY,
    payment_id        uuid        NOT NULL REFERENCES payments (id) ON DELETE CASCADE,
    amount_minor      bigint      NOT NULL,
    status            text        NOT NULL DEFAULT 'pending',
    reason            text,
    -- The caller's idempotency key (NULL for refunds learned from Stripe).
    request_id        uuid,
    -- The Stripe idempotency key derived from the request.
    idempotency_key   text        NOT NULL,
    stripe_refund_id  text,
    failure_reason    text,
    lease_until       timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    processed_at      timestamptz,
    CONSTRAINT refunds_amount_positive CHECK (amount_minor > 0),
    CONSTRAINT refunds_status_known CHECK (status IN ('pending', 'succeeded', 'failed', 'cancelled')),
    CONSTRAINT refunds_request_unique UNIQUE (request_id),
    CONSTRAINT refunds_idempotency_key_unique UNIQUE (idempotency_key),
    CONSTRAINT refunds_stripe_refund_unique UNIQUE (stripe_refund_id)
);
CREATE INDEX refunds_payment ON refunds (payment_id);
CREATE INDEX refunds_pending ON refunds (updated_at) WHERE status = 'pending';

-- Stripe events already applied: the insert commits with the effect, so a
-- redelivered event is recognised and does nothing.
CREATE TABLE processed_webhook_events (
    stripe_event_id text        PRIMARY KEY,
    event_type      text        NOT NULL,
    processed_at    timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION payments_touch_updated_at() RETURNS trigger AS $$
BEGIN
    NEW.updated_at = now();
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER payments_touch_updated_at BEFORE UPDATE ON payments
    FOR EACH ROW EXECUTE FUNCTION payments_touch_updated_at();
CREATE TRIGGER refunds_touch_updated_at BEFORE UPDATE ON refunds
    FOR EACH ROW EXECUTE FUNCTION payments_touch_updated_at();
