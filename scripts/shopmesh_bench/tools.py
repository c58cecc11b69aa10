"""The load generators, installed at exact versions on first use.

ghz (gRPC) is built from the Go module proxy into the shared cache like grpcurl
(see shopmesh_stack.install); h2load (HTTP/2, one connection with many streams,
as ghz uses one connection) comes from Debian's nghttp2-client.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from shopmesh_stack.install import InstallError, _go_install, _run

GHZ_MODULE = "github.com/bojand/ghz/cmd/ghz"
GHZ_VERSION = "v0.120.0"
H2LOAD_PACKAGE = "nghttp2-client"


def install_ghz(cache: Path) -> Path:
    return _go_install(cache, "ghz", GHZ_MODULE, GHZ_VERSION)


def install_h2load() -> Path:
    found = shutil.which("h2load")
    if found is not None:
        return Path(found)
    if os.geteuid() != 0:
        raise InstallError(f"h2load: {H2LOAD_PACKAGE} is not installed; run: sudo apt-get install -y {H2LOAD_PACKAGE}")
    print(f"==> installing {H2LOAD_PACKAGE} (Debian) for h2load", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    _run("h2load", ["apt-get", "update", "-q"], env=env)
    _run("h2load", ["apt-get", "install", "-y", "-q", H2LOAD_PACKAGE], env=env)
    found = shutil.which("h2load")
    if found is None:
        raise InstallError(f"h2load: {H2LOAD_PACKAGE} installed but h2load is not on PATH")
    return Path(found)
