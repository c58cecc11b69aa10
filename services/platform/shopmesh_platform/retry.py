"""Keep a background loop alive: restart it with exponential backoff when it fails.

Used by the outbox relay and the revocation feed, whose dependencies (Kafka,
PostgreSQL) may be down for a while: the loop logs, waits and tries again,
forever, until it is cancelled. Smaller than a retry library for this one shape.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from shopmesh_platform.database_errors import describe


async def keep_running(
    name: str,
    attempt: Callable[[], Awaitable[None]],
    logger: logging.Logger,
    *,
    initial_backoff: float = 0.5,
    max_backoff: float = 10.0,
    on_failure: Callable[[], None] | None = None,
) -> None:
    """Run `attempt()` again and again; failures wait `initial_backoff` doubling to `max_backoff`."""
    backoff = initial_backoff
    while True:
        try:
            await attempt()
            backoff = initial_backoff
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if on_failure is not None:
                on_failure()
            # A database error's text may quote rows: only its description is logged.
            error = describe(exc) or str(exc)
            logger.warning(f"{name} interrupted; retrying", extra={"error": error, "retry_in_s": backoff})
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, max_backoff)
