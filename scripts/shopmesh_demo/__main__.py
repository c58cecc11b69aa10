"""Command line: `python -m shopmesh_demo [--start] [--wait SECONDS]` (`make demo` passes --start).

Exit status 0 when every step happened (the trace print may fail softly, with a
message), 1 when a step did not, 2 when the stack could not be started.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from typing import TextIO

from shopmesh_demo.client import Client, DemoFailure
from shopmesh_demo.endpoints import Endpoints
from shopmesh_demo.narration import Narrator
from shopmesh_demo.story import Story, StoryConfig
from shopmesh_demo.trace import print_trace, trace_command
from shopmesh_demo.tracecontext import TraceContext
from shopmesh_platform.config import ConfigError
from shopmesh_stack.install import InstallError
from shopmesh_stack.settings import StackSettings
from shopmesh_stack.stack import Stack

TRACE_STEP = "The whole story as one trace"


def stack_is_running(settings: StackSettings) -> bool:
    """Every component of the stack `make up` would run is up (by its pid files)."""
    return all(row.running for row in Stack(settings).status())


def start_stack() -> bool:
    """`make up`'s own command; True when it started everything."""
    return subprocess.run([sys.executable, "-m", "shopmesh_stack", "up"], check=False).returncode == 0


def run(endpoints: Endpoints, config: StoryConfig, out: TextIO, trace: TraceContext | None = None) -> int:
    """The story, then the trace print; 0 when every step of the story happened."""
    trace = trace or TraceContext()
    say = Narrator(out)
    say.intro(f"shopmesh demo: REST through the edge at {endpoints.edge}, mail in Mailpit at {endpoints.mailpit}")
    say.intro(f"every call sends traceparent 00-{trace.trace_id}-<a new span id>-01: one trace")
    client = Client(trace)
    try:
        Story(client, endpoints, say, config).run()
    except DemoFailure as failure:
        say.failed(str(failure))
        return 1
    finally:
        client.close()
    say.step(TRACE_STEP)
    say.note(f"trace id {trace.trace_id}")
    say.note(f"$ {' '.join(['python', *trace_command(trace.trace_id)[1:]])}")
    status = print_trace(trace.trace_id)
    if status != 0:
        say.note(f"FAILED: the span tree could not be printed (`python -m shopmesh_stack trace` exited {status})")
        return 1
    say.intro("\ndemo complete: every step happened")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="shopmesh_demo", description="a narrated checkout through the edge")
    parser.add_argument("--start", action="store_true", help="start the stack first (as `make up`) if it is not up")
    parser.add_argument("--wait", type=float, default=StoryConfig.wait_seconds, help="seconds to wait per outcome")
    args = parser.parse_args(argv)
    try:
        settings = StackSettings.from_env()
        if args.start and not stack_is_running(settings):
            print("the stack is not (fully) up: starting it as `make up` does", flush=True)
            if not start_stack():
                print("error: the stack did not start (see above)", file=sys.stderr)
                return 2
    except (ConfigError, InstallError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return run(Endpoints.of(settings), StoryConfig(wait_seconds=args.wait), sys.stdout)


if __name__ == "__main__":
    sys.exit(main())
