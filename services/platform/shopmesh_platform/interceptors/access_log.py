"""One structured log line per call: method, status code, duration, peer.

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


class AccessLogInterceptor(AroundInterceptor):
    """Logs every finished call; server-side faults at error level."""

    async def around(self, call: CallInfo, proceed: NextCall) -> Any:
        started = time.perf_counter()
        error: BaseException | None = None
        try:
            return await proceed()
        except BaseException as exc:
            error = exc
            raise
        finally:
            code = outcome_code(call.context, error)
            server_fault = code in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN)
            logger.log(
                logging.ERROR if server_fault else logging.INFO,
                "rpc finished",
                extra={
                    "grpc_code": code.name,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 3),
                    "peer": call.context.peer(),
                },
            )
