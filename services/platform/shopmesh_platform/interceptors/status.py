"""Errors -> gRPC status, in one place.

A DomainError becomes its status code with a `google.rpc.Status` in the
`grpc-status-details-bin` trailer: one ErrorInfo (reason, domain, metadata) and,
when fields were invalid, a BadRequest with one FieldViolation each. Envoy's
transcoder prints that Status as the JSON error body. A database constraint
violation is the client's fault, not a bug: it becomes ALREADY_EXISTS or
INVALID_ARGUMENT naming the constraint, never the row
(shopmesh_platform.database_errors). A database that cannot be reached is
UNAVAILABLE (the client may retry), logged as a warning without a traceback. Any other exception is a bug: it is logged
with its traceback (database errors in it without their data) and the client
gets INTERNAL with only the request id, never the exception text. When the
status cannot be sent because the caller has already gone (its deadline passed,
it reset the stream), the call ends as CANCELLED, which is what it was, and not
as an UNKNOWN server fault.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc import aio

from shopmesh_platform import database_errors
from shopmesh_platform.context import request_id_var
from shopmesh_platform.errors import DomainError, Unimplemented
from shopmesh_platform.interceptors.base import AroundInterceptor, CallInfo, NextCall
from shopmesh_platform.interceptors.request_id import REQUEST_ID_HEADER

STATUS_DETAILS_KEY = "grpc-status-details-bin"
logger = logging.getLogger("shopmesh.errors")


def _packed(message: Any) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def rich_status(error: DomainError) -> status_pb2.Status:
    """The google.rpc.Status a DomainError is sent as."""
    code = grpc.StatusCode[error.code.value]
    details = [
        _packed(
            error_details_pb2.ErrorInfo(reason=error.reason, domain=error.error_domain, metadata=dict(error.metadata))
        )
    ]
    if error.field_violations:
        details.append(
            _packed(
                error_details_pb2.BadRequest(
                    field_violations=[
                        error_details_pb2.BadRequest.FieldViolation(
                            field=v.field, description=v.description, reason=v.reason
                        )
                        for v in error.field_violations
                    ]
                )
            )
        )
    return status_pb2.Status(code=code.value[0], message=error.message, details=details)


class StatusInterceptor(AroundInterceptor):
    """Maps exceptions raised below it (auth, validation, handlers) to statuses."""

    async def around(self, call: CallInfo, proceed: NextCall) -> Any:
        try:
            return await proceed()
        except aio.AbortError:
            raise
        except DomainError as error:
            await self._abort(call, grpc.StatusCode[error.code.value], rich_status(error))
        except NotImplementedError:
            # The generated servicer base classes raise this for methods not built yet.
            not_built = Unimplemented(f"{call.method} is not implemented yet", reason="NOT_IMPLEMENTED")
            await self._abort(call, grpc.StatusCode.UNIMPLEMENTED, rich_status(not_built))
        except Exception as exc:
            refused = database_errors.refusal(exc)
            if refused is not None:
                logger.warning(
                    "the database refused the change",
                    extra={"reason": refused.reason, **{f"db_{k}": v for k, v in refused.metadata.items()}},
                )
                await self._abort(call, grpc.StatusCode[refused.code.value], rich_status(refused))
                return
            unreachable = database_errors.unavailability(exc)
            if unreachable is not None:
                logger.warning(
                    "the database is unavailable", extra={"error": database_errors.describe(exc) or type(exc).__name__}
                )
                await self._abort(call, grpc.StatusCode.UNAVAILABLE, rich_status(unreachable))
                return
            logger.exception("unhandled error in handler")
            status = status_pb2.Status(
                code=code_pb2.INTERNAL,
                message=f"internal error (request id {request_id_var.get() or 'unknown'})",
                details=[_packed(error_details_pb2.ErrorInfo(reason="INTERNAL", domain="platform.shopmesh.dev"))],
            )
            await self._abort(call, grpc.StatusCode.INTERNAL, status)

    @staticmethod
    async def _abort(call: CallInfo, code: grpc.StatusCode, status: status_pb2.Status) -> None:
        trailers: list[tuple[str, str | bytes]] = [(STATUS_DETAILS_KEY, status.SerializeToString())]
        request_id = request_id_var.get()
        if request_id:
            trailers.append((REQUEST_ID_HEADER, request_id))
        try:
            await call.context.abort(code, status.message, trailing_metadata=tuple(trailers))
        except aio.AbortError:
            raise
        except Exception as undelivered:
            # gRPC could not send the status (ExecuteBatchError): nobody is listening any more.
            logger.info(
                "the caller left before its answer",
                extra={"undelivered_code": code.name, "error": type(undelivered).__name__},
            )
            raise asyncio.CancelledError from undelivered
