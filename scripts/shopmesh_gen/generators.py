"""The pinned protoc plugins, installed on first use and reused afterwards.

Go plugins are built at exact versions from the Go module proxy into the shared
cache (SHOPMESH_CACHE/go/bin/<name>-<version>), like the stack's grpcurl.
protoc-gen-es comes from npm with the TypeScript client's own lock file
(clients/typescript/package-lock.json), installed with `npm ci` into its
node_modules; a stamp with the lock file's hash makes the next run skip it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from shopmesh_stack.install import InstallError, _go_install
from shopmesh_stack.settings import REPO


@dataclass(frozen=True)
class GoPlugin:
    """A protoc plugin built from a Go module at an exact version."""

    name: str
    package: str
    version: str


PROTOC_GEN_GO = GoPlugin("protoc-gen-go", "google.golang.org/protobuf/cmd/protoc-gen-go", "v1.36.12")
PROTOC_GEN_GO_GRPC = GoPlugin("protoc-gen-go-grpc", "google.golang.org/grpc/cmd/protoc-gen-go-grpc", "v1.6.2")
PROTOC_GEN_OPENAPI = GoPlugin("protoc-gen-openapi", "github.com/google/gnostic/cmd/protoc-gen-openapi", "v0.7.1")
PROTOC_GEN_DOC = GoPlugin("protoc-gen-doc", "github.com/pseudomuto/protoc-gen-doc/cmd/protoc-gen-doc", "v1.5.1")
GO_PLUGINS = (PROTOC_GEN_GO, PROTOC_GEN_GO_GRPC, PROTOC_GEN_OPENAPI, PROTOC_GEN_DOC)

TYPESCRIPT_CLIENT = REPO / "clients" / "typescript"


def cache_dir() -> Path:
    return Path(os.environ.get("SHOPMESH_CACHE", Path.home() / ".cache" / "shopmesh"))


def go_plugin(plugin: GoPlugin) -> Path:
    """The plugin's binary, built first if this machine has not built this version yet."""
    return _go_install(cache_dir(), plugin.name, plugin.package, plugin.version)


def npm_install(package_dir: Path = TYPESCRIPT_CLIENT) -> Path:
    """`npm ci` from the lock file unless node_modules already matches it; returns node_modules/.bin."""
    lock = package_dir / "package-lock.json"
    modules = package_dir / "node_modules"
    stamp = modules / ".shopmesh-lock-sha256"
    digest = hashlib.sha256(lock.read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text().strip() == digest:
        return modules / ".bin"
    npm = shutil.which("npm")
    if npm is None:
        raise InstallError("typescript: npm (Node.js 20+) is needed for the TypeScript client and protoc-gen-es")
    print(f"==> installing the TypeScript client's npm packages (package-lock.json) into {modules}", flush=True)
    try:
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts", "--loglevel=error"],
            cwd=package_dir,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError) as exc:
        raise InstallError(f"typescript: `npm ci` in {package_dir} failed: {exc}") from exc
    stamp.write_text(digest + "\n")
    return modules / ".bin"


def protoc_gen_es() -> Path:
    return npm_install() / "protoc-gen-es"
