"""Renew the mesh certificates while the stack runs.

`python -m shopmesh_stack.renewer --pki-dir DIR --lifetime-seconds N --heartbeat FILE`

`make up` issues the certificates; this process, started with the stack, keeps
them current: every round it reissues those that have used two thirds of their
lifetime (LocalCA.renew, under the issuing lock `make up` also takes). The
services and Envoy notice the new files and use them for new connections, so a
stack left running never reaches the end of its certificates. A failed round is
logged and retried at the next; SIGTERM stops it between rounds.
"""

from __future__ import annotations

import argparse
import datetime as dt
import signal
import sys
import threading
import traceback
from pathlib import Path
from types import FrameType

from shopmesh_platform.mesh import load_mesh
from shopmesh_stack.pki import LocalCA

LONGEST_ROUND_GAP_SECONDS = 60.0
SHORTEST_ROUND_GAP_SECONDS = 1.0


def round_gap(lifetime: dt.timedelta) -> float:
    """Seconds between rounds: a tenth of the lifetime, within 1..60 s (short lifetimes are for tests)."""
    return min(LONGEST_ROUND_GAP_SECONDS, max(SHORTEST_ROUND_GAP_SECONDS, lifetime.total_seconds() / 10))


def run(authority: LocalCA, identities: list[str], heartbeat: Path, stop: threading.Event) -> None:
    """Renew until `stop` is set; `heartbeat` is touched after every successful round."""
    gap = round_gap(authority.lifetime)
    while not stop.is_set():
        try:
            renewed = authority.renew(identities)
        except Exception:
            print(f"renewal round failed; retrying in {gap:g}s\n{traceback.format_exc()}", flush=True)
        else:
            if renewed:
                print(f"renewed certificates of {', '.join(renewed)}", flush=True)
            heartbeat.touch()
        stop.wait(gap)


def main() -> int:
    parser = argparse.ArgumentParser(prog="shopmesh_stack.renewer", description=__doc__)
    parser.add_argument("--pki-dir", type=Path, required=True)
    parser.add_argument("--lifetime-seconds", type=int, required=True)
    parser.add_argument("--heartbeat", type=Path, required=True)
    args = parser.parse_args()
    mesh = load_mesh()
    authority = LocalCA(args.pki_dir, mesh.trust_domain, mesh.namespace, dt.timedelta(seconds=args.lifetime_seconds))
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    print(f"renewing certificates in {args.pki_dir} every {round_gap(authority.lifetime):g}s", flush=True)
    run(authority, list(mesh.identities), args.heartbeat, stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
