"""Input rules from the contracts (protovalidate) enforced before any handler runs.

A request that breaks a rule is refused with INVALID_ARGUMENT and one BadRequest
field violation per broken rule, naming the field path (`items[0].quantity`) and
the rule id (`int32.gte_lte`), so every client sees the same rules.

Bytes that do not decode as the request type at all (garbage, a wrong wire type,
invalid UTF-8 in a string) are the client's error too: INVALID_ARGUMENT with reason
MALFORMED_REQUEST. Left to grpc they would be UNKNOWN, naming a Python exception
class. The decoder hands such a request on as an `UndecodableRequest`, so the auth
interceptor still refuses a caller it does not let in before the input is judged.

Whether a message type can break any rule is decided once per type, from its
descriptor (`has_rules`): a type with no options anywhere it reaches (Health's
requests, GetMe's empty one) is not handed to the validator at all.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable
from typing import Any

import protovalidate
from google.protobuf.message import DecodeError, Message
from grpc import aio

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


def has_rules(descriptor: Any) -> bool:
    """Whether validating a message of this type (its Descriptor) could find anything to check.

    Conservative: any option set on the message, one of its oneofs or fields, or
    on a message type one of its fields reaches (maps and recursion included)
    counts, whether it is a buf.validate rule or not.
    """
    return _reaches_options(descriptor, set())


def _reaches_options(descriptor: Any, seen: set[str]) -> bool:
    if descriptor.full_name in seen:
        return False
    seen.add(descriptor.full_name)
    if descriptor.GetOptions().ByteSize():
        return True
    if any(oneof.GetOptions().ByteSize() for oneof in descriptor.oneofs):
        return True
    for field in descriptor.fields:
        if field.GetOptions().ByteSize():
            return True
        if field.message_type is not None and _reaches_options(field.message_type, seen):
            return True
    return False


@dataclasses.dataclass(frozen=True)
class UndecodableRequest:
    """Request bytes that are not a message of `type_name`."""

    type_name: str


def tolerant(decode: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    """`decode`, answering UndecodableRequest instead of raising DecodeError."""
    message_class = getattr(decode, "__self__", None)
    descriptor = getattr(message_class, "DESCRIPTOR", None)
    type_name = descriptor.full_name if descriptor is not None else "request"

    def decode_or_mark(data: bytes) -> Any:
        try:
            return decode(data)
        except DecodeError:
            return UndecodableRequest(type_name)

    return decode_or_mark


class ValidationInterceptor(AroundInterceptor):
    """Innermost interceptor: validates every decoded request message, each one of a stream."""

    def __init__(self) -> None:
        self._validator = protovalidate.Validator()
        # Per message type, decided on its first request: bounded by the types served.
        self._has_rules: dict[str, bool] = {}

    async def around(self, call: CallInfo, proceed: NextCall) -> Any:
        if not call.kind.request_streaming:
            self.check(call.request)
            return await proceed()
        # A handler reads a request stream from its iterator or with context.read():
        # both hand it only messages that passed; the first bad one ends the call.
        checked = dataclasses.replace(
            call, request=self._checked(call.request), context=_CheckedReads(call.context, self.check)
        )
        return await proceed(checked)

    def request_deserializer(self, original: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
        return None if original is None else tolerant(original)

    def check(self, message: Any) -> None:
        """Raise InvalidArgument naming every broken rule of `message`."""
        if isinstance(message, UndecodableRequest):
            raise InvalidArgument(
                f"invalid request: not a well-formed {message.type_name} message", reason="MALFORMED_REQUEST"
            )
        if not isinstance(message, Message):
            return
        descriptor = message.DESCRIPTOR
        checked = self._has_rules.get(descriptor.full_name)
        if checked is None:
            checked = self._has_rules[descriptor.full_name] = has_rules(descriptor)
        if not checked:
            return
        violations = self._validator.collect_violations(message)
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

    async def _checked(self, messages: AsyncIterator[Any]) -> AsyncIterator[Any]:
        async for message in messages:
            self.check(message)
            yield message


class _CheckedReads:
    """A call's context whose `read()` validates each message it returns; all else is the context's."""

    def __init__(self, context: aio.ServicerContext[Any, Any], check: Callable[[Any], None]) -> None:
        self._context = context
        self._check = check

    async def read(self) -> Any:
        message = await self._context.read()
        if message is not aio.EOF:
            self._check(message)
        return message

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)
