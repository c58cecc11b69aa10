"""One structured log line per call that matters: failed, slow, or (at DEBUG) any.

A successful call that took less than the slow-call threshold is logged at
DEBUG, so a service at INFO writes nothing for it (`make bench-platform` showed
a line per call costing more CPU than the rest of the chain); failed calls are
logged at INFO, server-side faults at ERROR, and a slow successful call at INFO
with `slow: true`. When the line's level is off, nothing is built for it.

Request and trace ids come from the JSON formatter (see shopmesh_platform.logs).
Request and response bodies are never logged: they may hold passwords and tokens.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import grpc

from shopmesh_platform.interceptors.base import AroundInterceptor, CallInfo, NextCall, outcome_code

logger = logging.getLogger("shopmesh.access")

# A successful call slower than this is logged at INFO like a failed one.
SLOW_CALL_SECONDS = 0.5
_SERVER_FAULTS = (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN)


class AccessLogInterceptor(AroundInterceptor):
    """Logs every finished call: failed and slow ones at INFO or ERROR, the rest at DEBUG."""

    def __init__(self, slow_call_seconds: float = SLOW_CALL_SECONDS) -> None:
        self._slow_call_seconds = slow_call_seconds

    async def around(self, call: CallInfo, proceed: NextCall) -> Any:
        started = time.perf_counter()
        error: BaseException | None = None
        try:
            return await proceed()
        except BaseException as exc:
            error = exc
            raise
        finally:
            duration = time.perf_counter() - started
            code = outcome_code(call.context, error)
            slow = duration >= self._slow_call_seconds
            if code in _SERVER_FAULTS:
                level = logging.ERROR
            elif code is not grpc.StatusCode.OK or slow:
                level = logging.INFO
            else:
                level = logging.DEBUG
            if logger.isEnabledFor(level):
                logger.log(
                    level,
                    "rpc finished",
                    extra={
                        "grpc_code": code.name,
                        "duration_ms": round(duration * 1000, 3),
                        "peer": call.context.peer(),
                        **({"slow": True} if slow else {}),
                    },
                )
