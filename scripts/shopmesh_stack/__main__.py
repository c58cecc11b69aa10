"""Command line of the local stack: `python -m shopmesh_stack COMMAND` (see `make help`)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

from shopmesh_platform.config import ConfigError
from shopmesh_stack import dlq
from shopmesh_stack.channels import grpcurl_tls_flags
from shopmesh_stack.install import InstallError, install_all
from shopmesh_stack.settings import StackSettings
from shopmesh_stack.stack import Stack
from shopmesh_stack.traces import TraceQueryError, print_trace
from shopmesh_stack.waiting import StartError


def command_up(stack: Stack) -> None:
    print(f"starting the stack in {stack.settings.data_dir}", flush=True)
    stack.up()
    edge = stack.settings.edge_url
    grpcurl = os.path.relpath(stack.grpcurl)
    # The example calls the first service of the mesh directly, with the developer certificate.
    example = stack.settings.services[0]
    direct = " ".join(
        os.path.relpath(arg) if arg.startswith("/") else arg for arg in grpcurl_tls_flags(stack.settings, example)
    )
    ports = stack.settings.ports
    # Reflection through the edge exists only in the developer profile (mesh/mesh.yaml edge.platform_api).
    through_edge = f"{grpcurl} -plaintext 127.0.0.1:{ports.edge} list\n  " if stack.edge.platform_api else ""
    print(
        f"""
shopmesh is up. Edge (REST and gRPC): {edge}   profile: {stack.edge.profile}
  curl -s {edge}/healthz
  curl -s {edge}/api/v1/products
  {through_edge}{grpcurl} {direct} -d '{{"service": ""}}' 127.0.0.1:{ports.grpc(example)} grpc.health.v1.Health/Check
Edge metrics: http://127.0.0.1:{ports.edge_metrics}/stats/prometheus   (Envoy admin: {stack.edge.admin_socket})
Mail (Mailpit UI and API): {stack.mailpit.ui_url}   SMTP: 127.0.0.1:{ports.mailpit_smtp}
Logs: {stack.settings.log_dir}   Status: make status   Stop: make down"""
    )


def command_status(stack: Stack) -> None:
    print(f"{'component':<14} {'state':<6} {'pid':>8} {'port':>6}  log")
    for row in stack.status():
        state = "up" if row.running else "down"
        print(f"{row.name:<14} {state:<6} {row.pid or '-':>8} {row.port or '-':>6}  {row.log_file}")


def command_logs(stack: Stack, component: str | None, follow: bool) -> None:
    names = [c.name for c in stack.components]
    if component is not None and component not in names:
        raise SystemExit(f"unknown component {component!r}; one of: {', '.join(names)}")
    files = [str(c.process.spec.log_file) for c in stack.components if component in (None, c.name)]
    files = [f for f in files if os.path.exists(f)]
    if files:
        subprocess.run(["tail", "-n", "40", *(["-F"] if follow else []), *files], check=False)


def command_trace(settings: StackSettings, trace_id: str, query_url: str | None, wait: float) -> int:
    """Print one trace's span tree, read from Jaeger's query API (the stack's unless `query_url`)."""
    url = query_url or f"http://127.0.0.1:{settings.ports.jaeger_query}"
    return 0 if print_trace(url, trace_id, wait=wait) else 1


def main() -> int:
    parser = argparse.ArgumentParser(prog="shopmesh_stack", description="the shopmesh local stack")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("install", help="install missing components into the cache")
    sub.add_parser("up", help="start everything (installs on first use)")
    sub.add_parser("down", help="stop what the stack started; keep the data")
    sub.add_parser("status", help="each component: up/down, pid, port, log")
    logs = sub.add_parser("logs", help="show (and with -f follow) the logs")
    logs.add_argument("component", nargs="?")
    logs.add_argument("-f", "--follow", action="store_true")
    sub.add_parser("clean", help="stop and delete the data directory")
    roll = sub.add_parser("roll", help="replace services' processes one by one without refusing a call")
    roll.add_argument("service", nargs="*", help="services to replace, in this order (default: all, in start order)")
    trace = sub.add_parser("trace", help="print a trace's span tree from Jaeger's query API")
    trace.add_argument("trace_id", help="32 hex digits (the trace_id of a log line or a traceparent)")
    trace.add_argument("--query-url", help="Jaeger's query API (default: this stack's, SHOPMESH_PORT_JAEGER_QUERY)")
    trace.add_argument(
        "--wait", type=float, default=0.0, metavar="SECONDS", help="wait up to this long for the trace to be complete"
    )
    dlq.add_parser(sub)
    args = parser.parse_args()
    try:
        settings = StackSettings.from_env()
        if args.command == "dlq":
            return dlq.run(args, settings)
        if args.command == "trace":
            return command_trace(settings, args.trace_id, args.query_url, args.wait)
        if args.command == "install":
            install_all(settings.cache_dir)
            print("all components installed")
            return 0
        stack = Stack(settings)
        if args.command == "up":
            command_up(stack)
        elif args.command == "down":
            stack.down()
        elif args.command == "status":
            command_status(stack)
        elif args.command == "logs":
            command_logs(stack, args.component, args.follow)
        elif args.command == "clean":
            stack.clean()
        elif args.command == "roll":
            for name in args.service or stack.settings.services:
                stack.roll(name)
    except (ConfigError, InstallError, StartError, TraceQueryError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
