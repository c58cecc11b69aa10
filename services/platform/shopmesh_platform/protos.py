"""Protobuf types looked up by their full names, without importing their stubs.

The platform knows other services only by what mesh/mesh.yaml says about them
(their package, their methods), never by importing their generated modules.
`message_class("shopmesh.user.v1.SessionRevoked")` imports every `_pb2` module
of that package (generated code lives in `gen/python`, on the path) so their
descriptors are in the default pool, and returns the message class; a name no
module of the package defines is an UnknownProtoType.
"""

from __future__ import annotations

import importlib
import pkgutil

from google.protobuf import descriptor_pool, message_factory
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import Message


class UnknownProtoType(LookupError):
    """No generated module of the named package defines the type."""


def _import_package(package: str) -> None:
    """Import the generated `_pb2` modules of a protobuf package (e.g. shopmesh.user.v1)."""
    try:
        module = importlib.import_module(package)
    except ImportError as exc:
        raise UnknownProtoType(f"no generated code for package {package!r} on the path") from exc
    for info in pkgutil.iter_modules(getattr(module, "__path__", [])):
        if info.name.endswith("_pb2"):
            importlib.import_module(f"{package}.{info.name}")


def _package_of(full_name: str) -> str:
    package, _, _ = full_name.rpartition(".")
    return package


def message_class(full_name: str) -> type[Message]:
    """The message class of `full_name` (package.Message)."""
    _import_package(_package_of(full_name))
    try:
        descriptor = descriptor_pool.Default().FindMessageTypeByName(full_name)
    except KeyError:
        raise UnknownProtoType(f"no message {full_name!r} in its package's generated code") from None
    return message_factory.GetMessageClass(descriptor)


def method_descriptor(service_full_name: str, method: str) -> MethodDescriptor:
    """The descriptor of `method` of the service `service_full_name` (package.Service)."""
    _import_package(_package_of(service_full_name))
    try:
        service = descriptor_pool.Default().FindServiceByName(service_full_name)
    except KeyError:
        raise UnknownProtoType(f"no service {service_full_name!r} in its package's generated code") from None
    found = service.methods_by_name.get(method)
    if found is None:
        raise UnknownProtoType(f"{service_full_name} has no method {method!r}")
    return found
