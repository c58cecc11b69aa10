"""The generated clients (Python wheel, Go module, TypeScript package) against the test instance.

Each client's smoke program runs one session through the edge's gRPC listener:
register, log in, GetMe, GetUser, and an invalid registration whose status it
decodes in its own language (ErrorInfo reason, BadRequest field violations). The
test checks what it reports against the edge's REST answers, which come from
the same services by another path.

The smoke programs also list products, create an order and read it back
(`--with-orders`), which the test checks against the order's REST answer.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from shopmesh_gen import generators
from shopmesh_stack.settings import REPO
from shopmesh_stack.stack import Stack
from tests.integration.helpers import http
from tests.integration.users_client import PASSWORD, unique_email

WITH_ORDERS = True
INVALID_REGISTRATION = {"email": "not-an-email", "password": "x", "firstName": "A", "lastName": "L"}
BUILD_TIMEOUT = 600


def run(argv: list[str], *, cwd: Path, env: dict[str, str] | None = None, timeout: float = BUILD_TIMEOUT) -> str:
    result = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    assert result.returncode == 0, f"{' '.join(argv)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def smoke_args(email: str, *, edge_flag: str, edge: str) -> list[str]:
    args = [edge_flag, edge, "--email", email, "--password", PASSWORD]
    return [*args, "--with-orders"] if WITH_ORDERS else args


def reported(stdout: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(stdout.strip().splitlines()[-1])
    return result


@pytest.fixture(scope="module")
def rest_refusal(stack: Stack) -> dict[str, Any]:
    """The same invalid registration over REST: the status every client must decode."""
    reply = http(stack, "POST", "/api/v1/users/register", json.dumps(INVALID_REGISTRATION))
    assert reply.status == 400, reply.body
    body = reply.json()
    info = next(d for d in body["details"] if d["@type"].endswith("google.rpc.ErrorInfo"))
    bad_request = next(d for d in body["details"] if d["@type"].endswith("google.rpc.BadRequest"))
    return {
        "errorCode": "INVALID_ARGUMENT",
        "errorReason": info["reason"],
        "errorDomain": info["domain"],
        "violations": sorted(v["field"] for v in bad_request["fieldViolations"]),
    }


def check_session(stack: Stack, email: str, result: dict[str, Any], rest_refusal: dict[str, Any]) -> None:
    login = http(stack, "POST", "/api/v1/users/login", json.dumps({"email": email, "password": PASSWORD}))
    assert login.status == 200, login.body
    me = http(stack, "GET", "/api/v1/users/me", headers={"Authorization": f"Bearer {login.json()['token']}"})
    assert result["userId"] == me.json()["id"]
    assert result["email"] == email
    refusal = {key: result[key] for key in rest_refusal}
    assert refusal == rest_refusal
    assert "email" in result["violations"]
    if WITH_ORDERS:
        order = http(
            stack,
            "GET",
            f"/api/v1/orders/{result['orderId']}",
            headers={"Authorization": f"Bearer {login.json()['token']}"},
        )
        assert order.status == 200 and order.json()["userId"] == result["userId"]


def uv_binary() -> str:
    uv = shutil.which("uv", path=os.environ.get("SHOPMESH_UV_PATH")) or shutil.which("uv")
    if uv is None:
        found = sorted(generators.cache_dir().glob("uv-*/bin/uv"))
        assert found, "uv is needed to build the Python client (make installs it)"
        uv = str(found[-1])
    return uv


def clean_env(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return {**env, **extra}


@pytest.mark.timeout(BUILD_TIMEOUT)
def test_python_client_wheel(stack: Stack, tmp_path: Path, rest_refusal: dict[str, Any]) -> None:
    uv = uv_binary()
    env = clean_env()
    run([uv, "build", "--wheel", "--quiet", "--out-dir", str(tmp_path / "dist"), "clients/python"], cwd=REPO, env=env)
    wheel = next((tmp_path / "dist").glob("shopmesh_client-*.whl"))
    run([uv, "venv", "--quiet", "--python", "python3.11", str(tmp_path / "venv")], cwd=tmp_path, env=env)
    python = tmp_path / "venv" / "bin" / "python"
    # The runtime libraries at the versions of the repository's lock file.
    pins = [
        f"{name}=={importlib.metadata.version(name)}" for name in ("grpcio", "protobuf", "googleapis-common-protos")
    ]
    run([uv, "pip", "install", "--quiet", "--python", str(python), str(wheel), *pins], cwd=tmp_path, env=env)
    # Run the smoke program away from the repository: only the installed wheel is importable.
    shutil.copy(REPO / "clients" / "python" / "smoke.py", tmp_path / "smoke.py")
    email = unique_email("py-client")
    edge = f"127.0.0.1:{stack.settings.ports.edge}"
    stdout = run([str(python), "smoke.py", *smoke_args(email, edge_flag="--edge", edge=edge)], cwd=tmp_path, env=env)
    check_session(stack, email, reported(stdout), rest_refusal)


@pytest.mark.timeout(BUILD_TIMEOUT)
def test_go_client(stack: Stack, tmp_path: Path, rest_refusal: dict[str, Any]) -> None:
    go = shutil.which("go") or "/usr/local/go/bin/go"
    env = clean_env(GOTOOLCHAIN="local", GOFLAGS="-mod=readonly")
    binary = tmp_path / "smoke"
    run([go, "build", "-o", str(binary), "./cmd/smoke"], cwd=REPO / "clients" / "go", env=env)
    email = unique_email("go-client")
    edge = f"127.0.0.1:{stack.settings.ports.edge}"
    args = [
        a.replace("--", "-", 1) if a.startswith("--") else a for a in smoke_args(email, edge_flag="--edge", edge=edge)
    ]
    stdout = run([str(binary), *args], cwd=tmp_path, env=env)
    check_session(stack, email, reported(stdout), rest_refusal)


@pytest.mark.timeout(BUILD_TIMEOUT)
def test_typescript_client(stack: Stack, tmp_path: Path, rest_refusal: dict[str, Any]) -> None:
    package = generators.TYPESCRIPT_CLIENT
    bin_dir = generators.npm_install(package)
    run([str(bin_dir / "tsc"), "-p", "tsconfig.json"], cwd=package)
    node = shutil.which("node")
    assert node, "Node.js is needed for the TypeScript client"
    email = unique_email("ts-client")
    edge = f"http://127.0.0.1:{stack.settings.ports.edge}"
    stdout = run([node, "dist/smoke.js", *smoke_args(email, edge_flag="--edge", edge=edge)], cwd=package)
    check_session(stack, email, reported(stdout), rest_refusal)
