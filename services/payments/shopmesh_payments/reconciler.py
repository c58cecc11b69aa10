"""The reconciler: re-reads from Stripe what is not settled yet, so a missed
webhook or a crash mid-payment never leaves a payment (or refund) pending.

Every `interval_seconds` (at once, after a short pause, while passes come back
full: a backlog after an outage drains at the provider's pace, not the interval's)
it takes the unsettled payments and pending refunds
nobody holds (their holder's lease expired, or the holder let go and asked for a
recheck after `reconcile_after_seconds`) and drives them like the API would,
applying the outcome once; and it refunds the paid payments of orders known
cancelled that have no cancellation refund yet (a payment that succeeded after
its order was cancelled, or a refund the provider could not take then).
"""

from __future__ import annotations

import asyncio
import logging

from shopmesh_payments.domain import Payments
from shopmesh_platform.database_errors import describe

logger = logging.getLogger("shopmesh.payments.reconciler")


# Payments (and refunds) taken per pass.
BATCH = 20
# Between two passes while they come back full. Whatever a pass took is leased or held
# for a recheck, so the next pass takes other rows; the pause only bounds the database
# queries of a pass that keeps finding work it cannot do.
BUSY_PAUSE_SECONDS = 0.1


class Reconciler:
    def __init__(self, payments: Payments, interval_seconds: float) -> None:
        self._payments = payments
        self._interval = interval_seconds

    async def run(self) -> None:
        """Until cancelled: one pass, then wait (a failed pass is logged and retried)."""
        while True:
            handled = 0
            try:
                handled = await self._payments.reconcile_once(BATCH)
                if handled:
                    logger.info("reconciled with stripe", extra={"count": handled})
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # A database error's text may quote rows: only its description is logged.
                logger.warning("reconciliation pass failed", extra={"error": describe(exc) or type(exc).__name__})
            await asyncio.sleep(min(BUSY_PAUSE_SECONDS, self._interval) if handled >= BATCH else self._interval)
