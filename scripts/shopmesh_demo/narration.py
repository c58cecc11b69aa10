"""What the demo prints: numbered steps, each HTTP call with its status and a one-line result."""

from __future__ import annotations

from typing import TextIO

from shopmesh_demo.client import Reply

INDENT = "    "


class Narrator:
    """Prints the story to `out` as it happens (flushed, so a slow step shows where it is)."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._step = 0

    def _print(self, line: str) -> None:
        print(line, file=self._out, flush=True)

    def intro(self, line: str) -> None:
        self._print(line)

    def step(self, title: str) -> None:
        self._step += 1
        self._print(f"\n[{self._step}] {title}")

    def call(self, reply: Reply, result: str) -> None:
        self._print(f"{INDENT}{reply.call}   {result}")

    def note(self, line: str) -> None:
        self._print(f"{INDENT}{line}")

    def failed(self, message: str) -> None:
        self._print(f"\nFAILED at step {self._step}: {message}")
