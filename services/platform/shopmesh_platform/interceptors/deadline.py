"""A service answers before its caller's timer fires: each call's own budget.

mesh.yaml gives every method a timeout, which the edge's route and the mesh's
callers enforce. A call still running when the caller's timer fires is reset
by the caller, and when the service has already sent the response headers (the
request id goes out just before the response) the reset reaches the client
as INTERNAL, with no status from the service at all (`make bench` saw this
under overload). So the service gives up first: a unary-response call whose
handler (authorisation included) runs past `BUDGET_SHARE` of the method's
declared timeout is cancelled and answers DEADLINE_EXCEEDED, with the request
id, while the caller is still listening. Cancelling a handler is what the
caller's own reset does anyway, so every handler already leaves no half-written
state behind (transactions roll back; a reservation without its order is
released by inventory's reaper; a payment whose Stripe call was cut is settled
by the reconciler).

Response streams are not bounded here: they live until the client leaves or the
service ends them (the edge gives them no timeout either). A caller's own
shorter deadline (`grpc-timeout`) is enforced by gRPC itself.
"""

from __future__ import annotations

import asyncio
from typing import Any

from shopmesh_platform.errors import DeadlineExceeded
from shopmesh_platform.interceptors.base import AroundInterceptor, CallInfo, NextCall
from shopmesh_platform.mesh import MeshDeclaration

# The share of the declared timeout a call may run: the rest is the answer's time to reach
# the caller before its timer fires (0.5 s of a 5 s default, 1 s of CreateOrder's 10 s).
BUDGET_SHARE = 0.9


class DeadlineInterceptor(AroundInterceptor):
    """Cancels a declared unary-response call that outlives its budget; DEADLINE_EXCEEDED."""

    def __init__(self, mesh: MeshDeclaration, *, share: float = BUDGET_SHARE) -> None:
        if not 0 < share < 1:
            raise ValueError(f"the budget share must lie between 0 and 1, not {share}")
        self._budgets = {method.path: method.timeout_seconds * share for method in mesh.all_methods()}

    def applies_to(self, method: str) -> bool:
        return method in self._budgets

    def budget_seconds(self, method: str) -> float | None:
        """How long a call of `method` may run here; None for a method the mesh does not declare."""
        return self._budgets.get(method)

    async def around(self, call: CallInfo, proceed: NextCall) -> Any:
        if call.kind.response_streaming:
            return await proceed()
        budget = self._budgets[call.method]
        timer = asyncio.timeout(budget)
        try:
            async with timer:
                return await proceed()
        except TimeoutError:
            if not timer.expired():
                raise  # the handler's own timeout (a driver's, a dependency's): not this budget
            raise DeadlineExceeded(
                f"the call did not finish within its {budget:g} s budget; it may or may not have taken effect",
                reason="DEADLINE_EXCEEDED",
                metadata={"budget_seconds": f"{budget:g}"},
            ) from None
