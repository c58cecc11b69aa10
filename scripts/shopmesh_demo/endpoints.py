"""Where the demo finds the stack: the edge and Mailpit, from the stack's own settings.

`StackSettings.from_env()` reads the same `SHOPMESH_PORT_<NAME>` variables as
`make up`, so the demo follows a stack moved to other ports, and a test points
it at its own instance by passing that instance's `Ports.variables()`.
"""

from __future__ import annotations

from dataclasses import dataclass

from shopmesh_stack.settings import StackSettings


@dataclass(frozen=True)
class Endpoints:
    """The base URLs the demo calls."""

    edge: str
    mailpit: str

    @classmethod
    def of(cls, settings: StackSettings) -> Endpoints:
        return cls(edge=settings.edge_url, mailpit=f"http://127.0.0.1:{settings.ports.mailpit_http}")
