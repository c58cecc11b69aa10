"""SIGTERM drains: health goes NOT_SERVING first, the in-flight call completes,
and the process exits 0. The server runs as a real child process."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import urllib.request
from pathlib import Path

from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from shopmesh.inventory.v1 import inventory_service_pb2 as inventory_pb2
from shopmesh.inventory.v1 import inventory_service_pb2_grpc as inventory_grpc
from tests.polling import eventually

REPO = Path(__file__).resolve().parents[2]


async def read_ports(process: asyncio.subprocess.Process) -> tuple[int, int]:
    assert process.stdout is not None
    while True:
        line = (await asyncio.wait_for(process.stdout.readline(), timeout=30)).decode()
        assert line, "server exited before announcing its ports"
        if line.startswith("PORTS "):
            grpc_port, metrics_port = line.split()[1:]
            return int(grpc_port), int(metrics_port)


def started_calls(metrics_port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith("grpc_server_started_total{") and 'grpc_method="GetProduct"' in line:
                return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_sigterm_drains_in_flight_call_and_exits_zero() -> None:
    env = {
        **os.environ,
        "SHOPMESH_GRPC_PORT": "0",
        "SHOPMESH_METRICS_PORT": "0",
        "SHOPMESH_DRAIN_GRACE_SECONDS": "10",
        "MESH_TLS": "off",
        "PYTHONPATH": str(REPO),
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.platform.sample_service",
        cwd=REPO,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        grpc_port, metrics_port = await read_ports(process)
        events: list[str] = []
        async with aio.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""))
            first = await watch.read()
            assert first.status == health_pb2.HealthCheckResponse.SERVING

            async def watch_health() -> None:
                while True:
                    update = await watch.read()
                    if update is aio.EOF:
                        return
                    if update.status == health_pb2.HealthCheckResponse.NOT_SERVING:
                        events.append("not_serving")
                        return

            async def slow_call() -> str:
                reply = await inventory_grpc.InventoryServiceStub(channel).GetProduct(
                    inventory_pb2.GetProductRequest(id="prod-slow"), timeout=30
                )
                events.append("call_completed")
                return reply.id

            watcher = asyncio.create_task(watch_health())
            call = asyncio.create_task(slow_call())
            await eventually(lambda: asyncio.to_thread(started_calls, metrics_port), lambda n: n >= 1, timeout=10)
            process.send_signal(signal.SIGTERM)
            assert await call == "prod-slow"
            await asyncio.wait_for(watcher, timeout=10)
        exit_code = await asyncio.wait_for(process.wait(), timeout=20)
        assert events == ["not_serving", "call_completed"]
        assert exit_code == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
