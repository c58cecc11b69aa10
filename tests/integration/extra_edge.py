"""Extra Envoy edges for tests: in front of the session's services, on ports of their own.

Each one is stopped when the test (or fixture) using it ends, also when starting
it failed half-way, so no extra Envoy outlives a failing test.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import replace
from typing import Any

from shopmesh_stack.components import Edge
from shopmesh_stack.settings import Ports, StackSettings
from shopmesh_stack.stack import Stack


def edge_ports(stack: Stack, upstreams: Mapping[str, int] | None = None) -> Ports:
    """Fresh ports for an edge's own listeners; its upstreams are the session's services (or `upstreams`)."""
    session = stack.settings.ports.services
    grpc = {name: ports.grpc for name, ports in session.items()} | dict(upstreams or {})
    services = {name: replace(ports, grpc=grpc[name]) for name, ports in session.items()}
    return replace(Ports.free(stack.settings.mesh), services=services)


def port_env(ports: Ports) -> dict[str, str]:
    """The `SHOPMESH_PORT_<NAME>` variables that select `ports`, as `make up` reads them."""
    return ports.variables()


@contextlib.contextmanager
def running_edge(
    stack: Stack,
    name: str,
    *,
    settings: StackSettings | None = None,
    rate_limits: str | None = None,
    profile: str | None = None,
    policy_overrides: Mapping[str, Any] | None = None,
) -> Iterator[Edge]:
    """Start an extra edge named `name` (settings default: the session's, on fresh ports); always stopped after.

    `rate_limits` is the JSON of `SHOPMESH_EDGE_RATE_LIMITS` ("" for the declared
    budgets); None takes the settings' own. `profile` and `policy_overrides` are
    Edge's (e.g. "production", or a shorter request-header timeout). Like the session's components, it
    dies with the test run.
    """
    settings = replace(settings or replace(stack.settings, ports=edge_ports(stack)), die_with_parent=True)
    edge = Edge(
        settings,
        stack.installed,
        name=name,
        rate_limit_overrides=rate_limits,
        profile=profile,
        policy_overrides=policy_overrides,
    )
    try:
        stack.start(edge)
        yield edge
    finally:
        stack.stop(edge)
