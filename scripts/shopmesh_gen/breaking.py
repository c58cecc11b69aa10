"""`make breaking`: buf breaking of the contracts against the baseline commit in proto/BASELINE.

Git tags do not travel with this repository, so the baseline is a commit id in a
file (moved deliberately at a release). Its contracts come from `git archive
<commit> proto`, which needs the commit in the clone's history (CI clones it whole).
Both sides are built into descriptor images by scripts/gen.py (no Buf registry).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path

from shopmesh_stack.settings import REPO

PROTO_ROOT = REPO / "proto"
BASELINE_FILE = PROTO_ROOT / "BASELINE"
BUF_CONFIG = PROTO_ROOT / "buf.yaml"


class BaselineError(RuntimeError):
    """The recorded baseline cannot be read or found."""


def baseline_commit(path: Path = BASELINE_FILE) -> str:
    lines = [line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]
    if len(lines) != 1:
        raise BaselineError(f"{path}: expected one commit id, found {len(lines)} lines")
    return lines[0]


def export_contracts(commit: str, destination: Path) -> Path:
    """proto/ as it was at `commit`, extracted under `destination`."""
    archive = subprocess.run(
        ["git", "archive", "--format=tar", commit, "proto"], cwd=REPO, capture_output=True, check=False
    )
    if archive.returncode != 0:
        raise BaselineError(f"git archive {commit}: {archive.stderr.decode().strip()} (is the history complete?)")
    with tarfile.open(fileobj=BytesIO(archive.stdout)) as tar:
        tar.extractall(destination, filter="data")
    return destination / "proto"


def build_image(proto_root: Path, image: Path) -> None:
    gen = REPO / "scripts" / "gen.py"
    subprocess.run([sys.executable, str(gen), "--proto-root", str(proto_root), "--image", str(image)], check=True)


def check(current: Path, baseline: Path) -> subprocess.CompletedProcess[str]:
    """buf breaking of the contracts in `current` against those in `baseline`; output captured."""
    with tempfile.TemporaryDirectory() as scratch:
        current_image, baseline_image = Path(scratch) / "current.binpb", Path(scratch) / "baseline.binpb"
        build_image(current, current_image)
        build_image(baseline, baseline_image)
        buf = Path(sys.executable).parent / "buf"
        return subprocess.run(
            [str(buf), "breaking", str(current_image), "--against", str(baseline_image), "--config", str(BUF_CONFIG)],
            cwd=PROTO_ROOT,
            capture_output=True,
            text=True,
            check=False,
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--against", help="a commit to compare with (default: the one in proto/BASELINE)")
    args = parser.parse_args()
    try:
        commit = args.against or baseline_commit()
        with tempfile.TemporaryDirectory() as scratch:
            result = check(PROTO_ROOT, export_contracts(commit, Path(scratch)))
    except BaselineError as error:
        print(f"breaking: {error}", file=sys.stderr)
        return 2
    if result.returncode != 0:
        print(result.stdout + result.stderr, file=sys.stderr, end="")
        print(f"buf: breaking changes against the baseline {commit[:12]} (proto/BASELINE)", file=sys.stderr)
        return 1
    print(f"buf: no breaking changes against the baseline {commit[:12]} (proto/BASELINE)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
