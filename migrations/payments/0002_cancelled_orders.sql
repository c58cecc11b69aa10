-- Orders payments learned were cancelled (from order-events' OrderCancelled), so a
-- payment of such an order is refunded whichever of the two payments learns last:
-- the cancellation (refunded when consumed) or the payment's success (refunded by
-- the reconciler's sweep of succeeded payments of cancelled orders).
CREATE TABLE cancelled_orders (
    order_id          uuid        PRIMARY KEY,
    -- The request id of the order's one cancellation refund (refunds.request_id).
    refund_request_id uuid        NOT NULL UNIQUE,
    reason            text        NOT NULL,
    recorded_at       timestamptz NOT NULL DEFAULT now()
);
