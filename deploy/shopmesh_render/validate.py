"""Validate the rendered manifests with `tools/manifestcheck` (Go; see its main.go).

The checker is built with the Go toolchain on first use, at the module versions
pinned in tools/manifestcheck/go.mod and go.sum, and cached under
$SHOPMESH_CACHE/manifestcheck-<hash of its sources> together with the Istio
CRDs of the pinned istio.io/api module: a second run builds nothing.

`python -m shopmesh_render.validate [FILE...]` checks the given manifests
(default: every rendered file under istio/, k8s/ and kafka/strimzi/).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TOOL = REPO / "tools" / "manifestcheck"
STRIMZI_CRDS = TOOL / "crds" / "strimzi"
ISTIO_CRDS_IN_MODULE = Path("kubernetes") / "customresourcedefinitions.gen.yaml"
RENDERED = ("istio", "k8s", "kafka/strimzi")
KUSTOMIZATION = "kustomization.yaml"


class CheckerBuildError(RuntimeError):
    """The Go build of the checker failed; the message names the command."""


@dataclass(frozen=True)
class Checker:
    binary: Path
    crds: tuple[Path, ...]

    def run(self, manifests: list[Path]) -> subprocess.CompletedProcess[str]:
        argv = [str(self.binary), "-crds", ",".join(map(str, self.crds)), *map(str, manifests)]
        return subprocess.run(argv, capture_output=True, text=True, check=False)


def cache_dir() -> Path:
    return Path(os.environ.get("SHOPMESH_CACHE", str(Path.home() / ".cache" / "shopmesh")))


def _source_hash() -> str:
    digest = hashlib.sha256()
    for name in ("go.mod", "go.sum", "main.go"):
        digest.update(name.encode() + b"\0" + (TOOL / name).read_bytes())
    return digest.hexdigest()[:16]


def _go(args: list[str], cwd: Path, env: dict[str, str]) -> str:
    go = shutil.which("go") or "/usr/local/go/bin/go"
    try:
        done = subprocess.run([go, *args], cwd=cwd, env=env, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", "") or str(exc)
        raise CheckerBuildError(f"manifestcheck: `go {' '.join(args)}` failed: {detail}") from exc
    return done.stdout.strip()


def build_checker(cache: Path | None = None) -> Checker:
    """The cached checker, built first if its sources changed."""
    home = (cache or cache_dir()) / f"manifestcheck-{_source_hash()}"
    binary, istio_crds = home / "manifestcheck", home / "istio-crds.yaml"
    strimzi = tuple(sorted(STRIMZI_CRDS.glob("*.yaml")))
    if binary.exists() and istio_crds.exists():
        return Checker(binary, (istio_crds, *strimzi))
    print("==> building tools/manifestcheck with the Go toolchain (first use only; a few minutes)", flush=True)
    env = {**os.environ, "GOFLAGS": "-mod=mod -trimpath", "CGO_ENABLED": "0", "GOTOOLCHAIN": "local"}
    home.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".manifestcheck-", dir=home.parent))
    try:
        _go(["build", "-o", str(work / "manifestcheck"), "."], TOOL, env)
        module_dir = Path(_go(["list", "-m", "-f", "{{.Dir}}", "istio.io/api"], TOOL, env))
        shutil.copyfile(module_dir / ISTIO_CRDS_IN_MODULE, work / "istio-crds.yaml")
        try:
            work.rename(home)
        except OSError:
            # Another build finished first; its result is the same.
            if not binary.exists():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return Checker(binary, (istio_crds, *strimzi))


def rendered_manifests(root: Path = REPO) -> list[Path]:
    return sorted(
        path for directory in RENDERED for path in (root / directory).rglob("*.yaml") if path.name != KUSTOMIZATION
    )


def main(argv: list[str]) -> int:
    manifests = [Path(a) for a in argv] or rendered_manifests()
    try:
        checker = build_checker()
    except CheckerBuildError as exc:
        print(exc, file=sys.stderr)
        return 2
    result = checker.run(manifests)
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr)
    return result.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
