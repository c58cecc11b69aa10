"""Run localstripe bound to 127.0.0.1, with its state in the stack's data directory.

Runs with the interpreter of localstripe's own virtualenv (installed by the
stack tool from scripts/requirements/localstripe.lock.txt); localstripe is
GPL-3.0 dev tooling and the product never imports it. This mirrors
`localstripe.server.start()` (1.15.10), which always binds every interface
and keeps its state in /tmp/localstripe.pickle, shared by every instance.
"""

import argparse
import logging
import pickle
from pathlib import Path

from aiohttp import web
from localstripe import resources
from localstripe.server import app, store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--store", type=Path, required=True, help="pickle file holding the emulator's state")
    args = parser.parse_args()
    store_path: Path = args.store

    def dump_to_disk(self: resources.Store) -> None:
        temporary = store_path.with_suffix(".tmp")
        with open(temporary, "wb") as f:
            pickle.dump(self, f, protocol=pickle.HIGHEST_PROTOCOL)
        temporary.replace(store_path)

    resources.Store.dump_to_disk = dump_to_disk
    if store_path.exists():
        with open(store_path, "rb") as f:
            store.update(pickle.load(f))

    access = logging.getLogger("aiohttp.access")
    access.setLevel(logging.INFO)
    access.addHandler(logging.StreamHandler())
    web.run_app(app, host=args.host, port=args.port, access_log=access, print=None)


if __name__ == "__main__":
    main()
