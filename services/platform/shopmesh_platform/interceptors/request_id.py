"""Request ids: taken from `x-request-id` (Envoy sets one) or made, and echoed back.

The id is put in a ContextVar so every log line of the call carries it, and
returned to the client so a user can quote it in a bug report: as initial
metadata with a response, and (added by the status interceptor) as trailing
metadata with an error. For a unary response, initial metadata is sent only
once the handler has succeeded, because a call whose headers have arrived can no
longer be retried by the client's retry policy; a response stream's headers
precede its first message, so there they are sent before the handler runs.
"""

from __future__ import annotations

import os
import re
from typing import Any

from shopmesh_platform.context import method_var, request_id_var
from shopmesh_platform.interceptors.base import AroundInterceptor, CallInfo, NextCall

REQUEST_ID_HEADER = "x-request-id"
# A client-supplied id is only trusted if it is short and plain, so it cannot
# forge log lines or blow up log storage.
_ACCEPTABLE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def new_request_id() -> str:
    """A random (version 4) UUID string, like str(uuid.uuid4()) at a quarter of its cost."""
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
    digits = raw.hex()
    return f"{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}"


class RequestIdInterceptor(AroundInterceptor):
    """Outermost interceptor: binds the request id and method for the call."""

    async def around(self, call: CallInfo, proceed: NextCall) -> Any:
        incoming = call.metadata(REQUEST_ID_HEADER)
        request_id = incoming if incoming and _ACCEPTABLE_ID.match(incoming) else new_request_id()
        request_token = request_id_var.set(request_id)
        method_token = method_var.set(call.method)
        try:
            if call.kind.response_streaming:
                await call.context.send_initial_metadata(((REQUEST_ID_HEADER, request_id),))
                return await proceed()
            response = await proceed()
            await call.context.send_initial_metadata(((REQUEST_ID_HEADER, request_id),))
            return response
        finally:
            method_var.reset(method_token)
            request_id_var.reset(request_token)
