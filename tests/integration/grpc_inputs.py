"""Hypothesis strategies for request bytes of any message in the descriptor set.

Three kinds of input, each a `bytes` payload sent as it is:
- `arbitrary`: a well-formed message of the method's request type with arbitrary
  field values (extreme numbers, NaN, unknown enum numbers, odd Unicode, empty and
  long strings, nested messages, repeated and map entries);
- `garbage`: random bytes;
- `malformed`: hand-built wire encodings that lie: a field with the wrong wire type,
  a string field holding invalid UTF-8, truncated varints and lengths that run past
  the end, unknown field numbers, deeply nested groups, an arbitrary message with
  bytes cut off its end.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor, ServiceDescriptor
from hypothesis import strategies as st

from shopmesh_stack.settings import REPO

DESCRIPTOR_SET = REPO / "gen" / "descriptors" / "shopmesh.binpb"
MAX_DEPTH = 3
INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)
# Wire types: varint, 64-bit, length-delimited, start group, end group, 32-bit.
VARINT, I64, LEN, SGROUP, EGROUP, I32 = 0, 1, 2, 3, 4, 5
WIRE_TYPE_OF = {
    FieldDescriptor.TYPE_DOUBLE: I64,
    FieldDescriptor.TYPE_FIXED64: I64,
    FieldDescriptor.TYPE_SFIXED64: I64,
    FieldDescriptor.TYPE_FLOAT: I32,
    FieldDescriptor.TYPE_FIXED32: I32,
    FieldDescriptor.TYPE_SFIXED32: I32,
    FieldDescriptor.TYPE_STRING: LEN,
    FieldDescriptor.TYPE_BYTES: LEN,
    FieldDescriptor.TYPE_MESSAGE: LEN,
}
INVALID_UTF8 = st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"a\x80b", b"\xf8\x88\x80\x80\x80"])


def load_pool() -> descriptor_pool.DescriptorPool:
    """A pool of every file in the descriptor set of `make gen`."""
    files = descriptor_pb2.FileDescriptorSet.FromString(DESCRIPTOR_SET.read_bytes())
    pool = descriptor_pool.DescriptorPool()
    for file in files.file:
        pool.Add(file)
    return pool


def service_methods(pool: descriptor_pool.DescriptorPool, full_name: str) -> list[MethodDescriptor]:
    service: ServiceDescriptor = pool.FindServiceByName(full_name)
    return list(service.methods)


def varint(value: int) -> bytes:
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def tag(number: int, wire_type: int) -> bytes:
    return varint((number << 3) | wire_type)


def length_delimited(number: int, payload: bytes) -> bytes:
    return tag(number, LEN) + varint(len(payload)) + payload


def _enum_numbers(field: FieldDescriptor) -> st.SearchStrategy[int]:
    # Known numbers and unknown ones (open enums keep them).
    assert field.enum_type is not None
    return st.one_of(st.sampled_from([v.number for v in field.enum_type.values]), st.integers(*INT32))


SCALARS: dict[int, Callable[[FieldDescriptor], st.SearchStrategy[Any]]] = {
    FieldDescriptor.TYPE_DOUBLE: lambda _: st.floats(width=64),
    FieldDescriptor.TYPE_FLOAT: lambda _: st.floats(width=32),
    FieldDescriptor.TYPE_INT32: lambda _: st.integers(*INT32),
    FieldDescriptor.TYPE_SINT32: lambda _: st.integers(*INT32),
    FieldDescriptor.TYPE_SFIXED32: lambda _: st.integers(*INT32),
    FieldDescriptor.TYPE_INT64: lambda _: st.integers(*INT64),
    FieldDescriptor.TYPE_SINT64: lambda _: st.integers(*INT64),
    FieldDescriptor.TYPE_SFIXED64: lambda _: st.integers(*INT64),
    FieldDescriptor.TYPE_UINT32: lambda _: st.integers(0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: lambda _: st.integers(0, 2**32 - 1),
    FieldDescriptor.TYPE_UINT64: lambda _: st.integers(0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: lambda _: st.integers(0, 2**64 - 1),
    FieldDescriptor.TYPE_BOOL: lambda _: st.booleans(),
    FieldDescriptor.TYPE_STRING: lambda _: st.one_of(
        st.text(max_size=40), st.text(min_size=200, max_size=3000), st.just("")
    ),
    FieldDescriptor.TYPE_BYTES: lambda _: st.binary(max_size=200),
    FieldDescriptor.TYPE_ENUM: _enum_numbers,
}


def message_strategy(descriptor: Descriptor, depth: int = 0) -> st.SearchStrategy[Any]:
    """Arbitrary, well-formed messages of `descriptor`'s type."""
    message_class = message_factory.GetMessageClass(descriptor)
    fields = [f for f in descriptor.fields if depth < MAX_DEPTH or f.type != FieldDescriptor.TYPE_MESSAGE]
    values: dict[str, st.SearchStrategy[Any]] = {}
    for field in fields:
        values[field.name] = _field_value(field, depth)
    optional = {name: strategy for name, strategy in values.items()}

    def build(chosen: dict[str, Any]) -> Any:
        message = message_class()
        for name, value in chosen.items():
            field = descriptor.fields_by_name[name]
            _assign(message, field, value)
        return message

    return st.fixed_dictionaries({}, optional=optional).map(build)


def _field_value(field: FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        key_field = field.message_type.fields_by_name["key"]
        value_field = field.message_type.fields_by_name["value"]
        return st.dictionaries(_single(key_field, depth + 1), _single(value_field, depth + 1), max_size=4)
    if field.is_repeated:
        return st.lists(_single(field, depth + 1), max_size=5)
    return _single(field, depth + 1)


def _single(field: FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
    if field.message_type is not None:
        return message_strategy(field.message_type, depth)
    if field.type not in SCALARS:
        raise AssertionError(f"no strategy for field type {field.type} ({field.full_name})")
    return SCALARS[field.type](field)


def _assign(message: Any, field: FieldDescriptor, value: Any) -> None:
    target = getattr(message, field.name)
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        value_field = field.message_type.fields_by_name["value"]
        for key, item in value.items():
            if value_field.type == FieldDescriptor.TYPE_MESSAGE:
                target[key].CopyFrom(item)
            else:
                target[key] = item
    elif field.is_repeated:
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            for item in value:
                target.add().CopyFrom(item)
        else:
            target.extend(value)
    elif field.type == FieldDescriptor.TYPE_MESSAGE:
        target.CopyFrom(value)
    else:
        setattr(message, field.name, value)


def _wrong_wire_type(field: FieldDescriptor) -> st.SearchStrategy[bytes]:
    """One field encoded with a wire type other than its own (varint for strings, ...)."""
    own = WIRE_TYPE_OF.get(field.type, VARINT)
    others = [w for w in (VARINT, I64, LEN, I32) if w != own]
    payloads: dict[int, Callable[[int], st.SearchStrategy[bytes]]] = {
        VARINT: lambda n: st.integers(0, 2**64 - 1).map(lambda v: tag(n, VARINT) + varint(v)),
        I64: lambda n: st.binary(min_size=8, max_size=8).map(lambda b: tag(n, I64) + b),
        I32: lambda n: st.binary(min_size=4, max_size=4).map(lambda b: tag(n, I32) + b),
        LEN: lambda n: st.binary(max_size=30).map(lambda b: length_delimited(n, b)),
    }
    return st.sampled_from(others).flatmap(lambda wire_type: payloads[wire_type](field.number))


def _lying_field(field: FieldDescriptor) -> st.SearchStrategy[bytes]:
    """A field whose bytes are wrong for it in a way its wire type does not show."""
    options = [_wrong_wire_type(field)]
    if field.type == FieldDescriptor.TYPE_STRING:
        options.append(INVALID_UTF8.map(lambda b: length_delimited(field.number, b)))
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        # A nested message that is itself garbage.
        options.append(st.binary(min_size=1, max_size=30).map(lambda b: length_delimited(field.number, b)))
    # A length or varint that runs past the end of the message.
    options.append(st.just(tag(field.number, LEN) + varint(1000) + b"x"))
    options.append(st.just(tag(field.number, VARINT) + b"\xff\xff\xff"))
    return st.one_of(options)


def _structural_garbage() -> st.SearchStrategy[bytes]:
    """Wire-level trouble that names no particular field."""
    unknown_field = st.integers(1000, 2**29 - 1).flatmap(
        lambda n: st.binary(max_size=20).map(lambda b: length_delimited(n, b))
    )
    deep_groups = st.integers(50, 200).map(lambda depth: tag(1000, SGROUP) * depth)
    field_zero = st.just(tag(0, VARINT) + b"\x01")
    overlong_varint = st.just(tag(1, VARINT) + b"\xff" * 11 + b"\x01")
    stray_end_group = st.just(tag(7, EGROUP))
    return st.one_of(unknown_field, deep_groups, field_zero, overlong_varint, stray_end_group)


def malformed_bytes(descriptor: Descriptor) -> st.SearchStrategy[bytes]:
    """Encodings of `descriptor`'s type that lie about their content (see the module docstring)."""
    pieces: list[st.SearchStrategy[bytes]] = [_structural_garbage()]
    pieces += [_lying_field(field) for field in descriptor.fields]
    valid = message_strategy(descriptor).map(lambda m: m.SerializeToString())
    truncated = valid.filter(lambda b: len(b) > 1).flatmap(
        lambda b: st.integers(1, len(b) - 1).map(lambda cut: b[:cut])
    )
    mixed = st.lists(st.one_of([valid, *pieces]), min_size=1, max_size=4).map(b"".join)
    return st.one_of(mixed, truncated)


def request_bytes(kind: str, descriptor: Descriptor) -> st.SearchStrategy[bytes]:
    """The strategy of one kind of input for a request of `descriptor`'s type."""
    if kind == "arbitrary":
        return message_strategy(descriptor).map(lambda m: m.SerializeToString())
    if kind == "garbage":
        return st.binary(max_size=300)
    if kind == "malformed":
        return malformed_bytes(descriptor)
    raise ValueError(kind)


INPUT_KINDS = ("arbitrary", "garbage", "malformed")
