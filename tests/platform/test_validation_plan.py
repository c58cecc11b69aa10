"""Validation is skipped only for message types that cannot break any rule, decided once per type."""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from grpc_health.v1 import health_pb2

from shopmesh.order.v1 import order_service_pb2 as order_pb2
from shopmesh.user.v1 import user_service_pb2 as user_pb2
from shopmesh_platform.errors import InvalidArgument
from shopmesh_platform.interceptors.validation import ValidationInterceptor, has_rules


def _test_types() -> tuple[Any, Any]:
    """`Wrapper` (no options of its own, but a field whose type has rules) and `Plain` (none anywhere)."""
    pool = descriptor_pool.Default()
    name = "tests/platform/validation_plan.proto"
    try:
        pool.FindFileByName(name)
    except KeyError:
        file = descriptor_pb2.FileDescriptorProto(
            name=name, package="tests.validation_plan", dependency=[order_pb2.DESCRIPTOR.name], syntax="proto3"
        )
        optional = descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL
        message = descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE
        wrapper = file.message_type.add(name="Wrapper")
        wrapper.field.add(
            name="address", number=1, label=optional, type=message, type_name=".shopmesh.order.v1.ShippingAddress"
        )
        wrapper.field.add(
            name="next", number=2, label=optional, type=message, type_name=".tests.validation_plan.Wrapper"
        )
        plain = file.message_type.add(name="Plain")
        plain.field.add(name="note", number=1, label=optional, type=descriptor_pb2.FieldDescriptorProto.TYPE_STRING)
        plain.field.add(name="next", number=2, label=optional, type=message, type_name=".tests.validation_plan.Plain")
        pool.Add(file)
    return (
        message_factory.GetMessageClass(pool.FindMessageTypeByName("tests.validation_plan.Wrapper")),
        message_factory.GetMessageClass(pool.FindMessageTypeByName("tests.validation_plan.Plain")),
    )


class CountingValidator:
    def __init__(self, validator: Any) -> None:
        self._validator = validator
        self.validated: list[str] = []

    def collect_violations(self, message: Any) -> Any:
        self.validated.append(message.DESCRIPTOR.full_name)
        return self._validator.collect_violations(message)


def test_types_with_rules_anywhere_they_reach_are_recognised() -> None:
    wrapper, plain = _test_types()
    assert has_rules(order_pb2.GetOrderRequest.DESCRIPTOR)  # a rule on its own field
    assert has_rules(order_pb2.CreateOrderRequest.DESCRIPTOR)
    assert has_rules(wrapper.DESCRIPTOR)  # only through a field's message type (recursive type too)
    assert not has_rules(plain.DESCRIPTOR)
    assert not has_rules(health_pb2.HealthCheckRequest.DESCRIPTOR)
    assert not has_rules(user_pb2.GetMeRequest.DESCRIPTOR)


def test_rule_less_types_skip_the_validator_and_the_rest_are_still_checked() -> None:
    wrapper, plain = _test_types()
    validation = ValidationInterceptor()
    counting = CountingValidator(validation._validator)
    validation._validator = counting  # type: ignore[assignment]

    for _ in range(3):
        validation.check(user_pb2.GetMeRequest())
        validation.check(plain(note="anything"))
    assert counting.validated == []

    with pytest.raises(InvalidArgument) as refused:
        validation.check(wrapper(address=order_pb2.ShippingAddress(street="")))
    assert refused.value.field_violations
    assert all(v.field.startswith("address.") for v in refused.value.field_violations)
    with pytest.raises(InvalidArgument):
        validation.check(order_pb2.GetOrderRequest(id="not-a-uuid"))
    assert counting.validated == ["tests.validation_plan.Wrapper", "shopmesh.order.v1.GetOrderRequest"]
