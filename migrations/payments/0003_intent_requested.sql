-- Whether a request to create this payment's PaymentIntent may have reached Stripe.
-- False only when every create attempt so far was refused before it left (the
-- circuit breaker was open, or no connection could be made): then nothing of the
-- payment exists at Stripe and whoever drives it next creates the PaymentIntent
-- without first searching Stripe's list for one (a search that pages through every
-- PaymentIntent when there is none). Existing rows keep the safe answer.
ALTER TABLE payments ADD COLUMN intent_requested boolean NOT NULL DEFAULT true;
