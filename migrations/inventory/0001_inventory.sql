-- The catalog, its stock, the stock ledger and reservations (issue 12).
--
-- Money is exact: integer minor units (29.99 USD is 2999). Stock is kept twice,
-- on purpose: the product row holds on_hand and reserved (what requests read
-- and lock), the append-only stock_ledger holds every change; the row always
-- equals the ledger's sums, written in the same transaction
-- (shopmesh_inventory.ledger_check verifies it). available = on_hand - reserved.
CREATE TABLE products (
    id            text        PRIMARY KEY CONSTRAINT products_id_format CHECK (id ~ '^prod-[A-Za-z0-9_-]{1,64}$'),
    name          text        NOT NULL,
    description   text        NOT NULL DEFAULT '',
    price_minor   bigint      NOT NULL CONSTRAINT products_price_nonnegative CHECK (price_minor >= 0),
    currency      text        NOT NULL CONSTRAINT products_currency_format CHECK (currency ~ '^[A-Z]{3}$'),
    category      text        NOT NULL DEFAULT '',
    image_url     text        NOT NULL DEFAULT '',
    active        boolean     NOT NULL DEFAULT true,
    -- The stock the product was created with: part of what a retried CreateProduct must repeat.
    initial_stock integer     NOT NULL DEFAULT 0 CONSTRAINT products_initial_stock_nonnegative CHECK (initial_stock >= 0),
    on_hand       bigint      NOT NULL DEFAULT 0,
    reserved      bigint      NOT NULL DEFAULT 0,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT products_reserved_nonnegative CHECK (reserved >= 0),
    -- available = on_hand - reserved is never negative, whatever the code does.
    CONSTRAINT products_on_hand_covers_reserved CHECK (on_hand >= reserved)
);
-- The public catalog pages by id among active products (optionally one category).
CREATE INDEX products_active_by_id ON products (id) WHERE active;
CREATE INDEX products_active_by_category ON products (category, id) WHERE active;

-- Every change of stock, never updated or deleted. Each row says how it moves
-- the product's two counters:
--   adjust   on_hand += delta (an admin's correction, or a product's initial stock); reserved unchanged
--   reserve  reserved += q                  (stock held for an order)
--   release  reserved -= q                  (an order's hold given back)
--   commit   on_hand -= q, reserved -= q    (a paid order's units leave the shelf)
--   return   on_hand += q                   (a committed order's units come back: paid order cancelled)
-- so on_hand = sum(on_hand_delta) and reserved = sum(reserved_delta) per product.
CREATE TABLE stock_ledger (
    id             bigserial   PRIMARY KEY,
    product_id     text        NOT NULL REFERENCES products (id),
    kind           text        NOT NULL CONSTRAINT stock_ledger_kind CHECK (kind IN ('adjust', 'reserve', 'release', 'commit', 'return')),
    on_hand_delta  bigint      NOT NULL,
    reserved_delta bigint      NOT NULL,
    -- The order a reserve/release/commit/return belongs to; adjustments have none.
    order_id       uuid,
    reason         text        NOT NULL DEFAULT '',
    -- AdjustStock's idempotency key (AIP-155); one ledger row per key.
    request_id     uuid        CONSTRAINT stock_ledger_request_id_unique UNIQUE,
    created_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT stock_ledger_deltas CHECK (
        (kind = 'adjust' AND on_hand_delta <> 0 AND reserved_delta = 0)
        OR (kind = 'reserve' AND on_hand_delta = 0 AND reserved_delta > 0)
        OR (kind = 'release' AND on_hand_delta = 0 AND reserved_delta < 0)
        OR (kind = 'commit' AND on_hand_delta < 0 AND reserved_delta = on_hand_delta)
        OR (kind = 'return' AND on_hand_delta > 0 AND reserved_delta = 0)
    ),
    CONSTRAINT stock_ledger_order CHECK ((kind = 'adjust') = (order_id IS NULL)),
    CONSTRAINT stock_ledger_request CHECK (kind = 'adjust' OR request_id IS NULL)
);
CREATE INDEX stock_ledger_product ON stock_ledger (product_id);
CREATE INDEX stock_ledger_order ON stock_ledger (order_id) WHERE order_id IS NOT NULL;

CREATE FUNCTION stock_ledger_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'stock_ledger is append-only' USING ERRCODE = 'restrict_violation';
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER stock_ledger_no_update BEFORE UPDATE OR DELETE ON stock_ledger
    FOR EACH ROW EXECUTE FUNCTION stock_ledger_append_only();
CREATE TRIGGER stock_ledger_no_truncate BEFORE TRUNCATE ON stock_ledger
    FOR EACH STATEMENT EXECUTE FUNCTION stock_ledger_append_only();

-- Stock held for one order (the order id is the idempotency key). The states
-- mirror the contract's ReservationState (RESERVATION_STATE_<upper case>).
CREATE TABLE reservations (
    order_id       uuid        PRIMARY KEY,
    state          text        NOT NULL DEFAULT 'active'
                   CONSTRAINT reservations_state CHECK (state IN ('active', 'committed', 'released', 'expired', 'returned')),
    currency       text        NOT NULL CONSTRAINT reservations_currency_format CHECK (currency ~ '^[A-Z]{3}$'),
    total_minor    bigint      NOT NULL CONSTRAINT reservations_total_nonnegative CHECK (total_minor >= 0),
    -- Why it was released or returned (e.g. the order's cancellation reason, or "orphaned").
    reason         text        NOT NULL DEFAULT '',
    -- Not set by inventory (orders alone decides expiry); kept for the contract's field.
    expires_at     timestamptz,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);
-- The reaper's question: active reservations, oldest first.
CREATE INDEX reservations_active ON reservations (created_at) WHERE state = 'active';

CREATE TABLE reservation_lines (
    order_id         uuid    NOT NULL REFERENCES reservations (order_id),
    product_id       text    NOT NULL REFERENCES products (id),
    -- The product's name and price when reserved: what the order was priced at.
    name             text    NOT NULL,
    quantity         integer NOT NULL CONSTRAINT reservation_lines_quantity CHECK (quantity BETWEEN 1 AND 1000),
    unit_price_minor bigint  NOT NULL CONSTRAINT reservation_lines_price_nonnegative CHECK (unit_price_minor >= 0),
    PRIMARY KEY (order_id, product_id)
);
CREATE INDEX reservation_lines_product ON reservation_lines (product_id);

-- Orders inventory has seen an OrderCreated for (set by the order-events
-- consumer through mark_order_seen). An active reservation of an order not in
-- here after the grace period is an orphan: orders reserved and never stored
-- the order, and the reaper releases it. Independent of reservations, so the
-- event may be seen before, after or without the reservation.
CREATE TABLE seen_orders (
    order_id uuid        PRIMARY KEY,
    seen_at  timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION touch_updated_at() RETURNS trigger AS $$
BEGIN
    NEW.updated_at = now();
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER products_touch_updated_at BEFORE UPDATE ON products
    FOR EACH ROW EXECUTE FUNCTION touch_updated_at();
CREATE TRIGGER reservations_touch_updated_at BEFORE UPDATE ON reservations
    FOR EACH ROW EXECUTE FUNCTION touch_updated_at();
