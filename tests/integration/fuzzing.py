"""What the fuzzers share: their budget, which methods are not built yet, and the
platform's "not implemented" answer.

The budget is read from the environment once (`make fuzz` raises it):
SHOPMESH_FUZZ_EXAMPLES generated inputs per REST operation and per gRPC method and
kind of input; SHOPMESH_FUZZ_DERANDOMIZE=false draws new inputs on every run
instead of the same reproducible ones (what `make test` runs).

A method is *not built yet* when the servicer class its service binds leaves it to
the generated base class, whose body raises NotImplementedError; the platform's
status interceptor turns that into UNIMPLEMENTED (HTTP 501) with one ErrorInfo whose
reason is NOT_IMPLEMENTED. That is the only UNIMPLEMENTED a fuzzer accepts, and only
from such a method: once a servicer defines the method, every 501 and UNIMPLEMENTED
from it is a failure, with no list to update.
"""

from __future__ import annotations

import importlib
import inspect
import os
from collections.abc import Mapping
from dataclasses import dataclass

from google.rpc import error_details_pb2, status_pb2
from hypothesis import HealthCheck, Phase, settings

from shopmesh_platform.mesh import MeshDeclaration

NOT_IMPLEMENTED_REASON = "NOT_IMPLEMENTED"
ERROR_INFO_TYPE = "type.googleapis.com/google.rpc.ErrorInfo"
DEFAULT_EXAMPLES = 30


@dataclass(frozen=True)
class FuzzBudget:
    """How much the fuzzers generate."""

    examples: int
    derandomize: bool

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> FuzzBudget:
        examples = int(env.get("SHOPMESH_FUZZ_EXAMPLES", str(DEFAULT_EXAMPLES)))
        if examples < 1:
            raise ValueError("SHOPMESH_FUZZ_EXAMPLES must be at least 1")
        derandomize = env.get("SHOPMESH_FUZZ_DERANDOMIZE", "true").lower()
        if derandomize not in ("true", "false"):
            raise ValueError("SHOPMESH_FUZZ_DERANDOMIZE must be true or false")
        return cls(examples, derandomize == "true")

    def hypothesis_settings(self) -> settings:
        """Hypothesis settings for one fuzzed operation: this budget, no deadline or example database."""
        return settings(
            max_examples=self.examples,
            derandomize=self.derandomize,
            deadline=None,
            database=None,
            phases=[Phase.explicit, Phase.generate, Phase.shrink],
            suppress_health_check=list(HealthCheck),
        )


def unbuilt_methods(mesh: MeshDeclaration) -> frozenset[str]:
    """gRPC paths (`/pkg.Service/Method`) whose servicer inherits the generated stub.

    Each service's servicer is the one subclass of the generated `<Service>Servicer`
    in `shopmesh_<service>.servicer`; anything else stops the fuzzer (it could not
    tell a built method from one that is not).
    """
    unbuilt: set[str] = set()
    for name, service in mesh.services.items():
        module = importlib.import_module(f"shopmesh_{name}.servicer")
        base_name = f"{service.service}Servicer"
        candidates = [
            cls
            for cls in vars(module).values()
            if inspect.isclass(cls)
            and cls.__module__ == module.__name__
            and any(b.__name__ == base_name and b.__module__.startswith(service.package) for b in cls.__mro__[1:])
        ]
        if len(candidates) != 1:
            raise AssertionError(f"{module.__name__}: expected one subclass of {base_name}, found {candidates}")
        servicer = candidates[0]
        base = next(b for b in servicer.__mro__[1:] if b.__name__ == base_name)
        for method in service.methods.values():
            if getattr(servicer, method.name) is getattr(base, method.name):
                unbuilt.add(method.path)
    return frozenset(unbuilt)


def error_reasons(status: status_pb2.Status) -> list[str]:
    """The reasons of the ErrorInfo details of a google.rpc.Status."""
    reasons = []
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Is(info.DESCRIPTOR) and detail.Unpack(info):
            reasons.append(info.reason)
    return reasons


def is_not_implemented_status(status: status_pb2.Status) -> bool:
    """Whether a google.rpc.Status is the platform's answer for a method not built yet."""
    return NOT_IMPLEMENTED_REASON in error_reasons(status)


def is_not_implemented_json(body: object) -> bool:
    """The same for the edge's JSON rendering of that Status."""
    if not isinstance(body, dict):
        return False
    details = body.get("details")
    return isinstance(details, list) and any(
        isinstance(d, dict) and d.get("@type") == ERROR_INFO_TYPE and d.get("reason") == NOT_IMPLEMENTED_REASON
        for d in details
    )
