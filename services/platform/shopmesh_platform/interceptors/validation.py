"""Input rules from the contracts (protovalidate) enforced before any handler runs.

A request that breaks a rule is refused with INVALID_ARGUMENT and one BadRequest
field violation per broken rule, naming the field path (`items[0].quantity`) and
the rule id (`int32.gte_lte`), so every client sees the same rules.
"""

from __future__ import annotations

from typing import Any

import protovalidate
from google.protobuf.message import Message

from shopmesh_platform.errors import FieldViolation, InvalidArgument
from shopmesh_platform.interceptors.base import AroundInterceptor, CallInfo, NextCall


def field_path(violation: protovalidate.Violation) -> str:
    """Render a violation's field path as `items[0].quantity` or `labels["key"]`.

    Names are the proto field names (snake_case), as in the contracts.
    """
    parts: list[str] = []
    path = violation.proto.field
    for element in path.elements if path is not None else ():
        parts.append(f".{element.field_name}" if parts else element.field_name)
        subscript = element.subscript
        if subscript is None:
            continue
        if subscript.field == "string_key":
            parts.append(f'["{subscript.value}"]')
        else:
            parts.append(f"[{subscript.value}]")
    return "".join(parts)


class ValidationInterceptor(AroundInterceptor):
    """Innermost interceptor: validates the decoded request message."""

    def __init__(self) -> None:
        self._validator = protovalidate.Validator()

    async def around(self, call: CallInfo, proceed: NextCall) -> Any:
        if isinstance(call.request, Message):
            violations = self._validator.collect_violations(call.request)
            if violations:
                raise InvalidArgument(
                    "invalid request: "
                    + "; ".join(f"{field_path(v) or '(message)'}: {v.proto.message}" for v in violations),
                    reason="INVALID_REQUEST",
                    field_violations=[
                        FieldViolation(field=field_path(v), description=v.proto.message, reason=v.proto.rule_id)
                        for v in violations
                    ],
                )
        return await proceed()
