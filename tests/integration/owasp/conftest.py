"""Fixtures of the OWASP API Security Top 10 modules.

They run on the session's stack (tests/integration/conftest.py), whose edge has
budgets too generous to ever refuse; the modules that prove the edge's limits use
`budget_edge`, a second Envoy in front of the same services with budgets of three
calls an hour (the hour's bucket, so no refill can land between a test's calls).
Its buckets are keyed per client address or token subject, so each test spends
them from loopback addresses and accounts of its own.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from shopmesh_stack.components import Edge
from shopmesh_stack.stack import Stack
from tests.integration.extra_edge import running_edge

BUDGET = 3
SMALL = {"per_minute": 1000, "per_hour": BUDGET}
# Budget classes (mesh.yaml `edge.rate_limits`) the suite spends: a subject's calls to users,
# an address's logins, an address's anonymous catalog reads.
SMALL_BUDGETS = {"users": SMALL, "users.Login": SMALL, "inventory": SMALL}


@pytest.fixture(scope="package")
def budget_edge(stack: Stack) -> Iterator[Edge]:
    """An extra edge with budgets of BUDGET an hour for SMALL_BUDGETS' classes (the declared ones otherwise)."""
    with running_edge(stack, "envoy-owasp", rate_limits=json.dumps(SMALL_BUDGETS)) as edge:
        yield edge
