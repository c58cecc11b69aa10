"""Run localstripe bound to 127.0.0.1, with its state in the stack's data directory.

Runs with the interpreter of localstripe's own virtualenv (installed by the
stack tool from scripts/requirements/localstripe.lock.txt); localstripe is
GPL-3.0 dev tooling and the product never imports it. This mirrors
`localstripe.server.start()` (1.15.10), which always binds every interface
and keeps its state in /tmp/localstripe.pickle, shared by every instance.

One write of the store per batch of requests: localstripe pickles its whole store
after every request that may change it (its `save_store_middleware`) and, on top of
that, on every object it adds or deletes. A payment's request adds three to six
objects (intent, charge, balance transaction, events), so the store was written
that many times per request, and a store of thousands of payments turned the
emulator into the checkout's bottleneck (`make bench`, `make chaos`). Inside a
request an added object now only marks the request dirty; before the answer leaves
(a middleware of ours in place of localstripe's: after every PUT/POST/DELETE, and
after any other request that added an object) the request waits for a write of the
store that starts after its changes, so an answered change is still on disk when
the emulator is SIGKILLed. Requests that finish while a write runs share the next
one (group commit, as a database's WAL flush): a write of a large store costs 100 ms
and more, and one per request capped the emulator at a few requests per second
whatever the load. Outside a request (localstripe's delayed callbacks) every change
is written at once, as before.

Idempotency keys are honoured as Stripe honours them (localstripe ignores them): a
POST with an `Idempotency-Key` that already succeeded (or was declined, 402) gets the
first answer again, with `Idempotent-Replayed: true`, and nothing is created twice;
the same key with other parameters is a 400 `idempotency_error`, and while the first
request runs, a 409. The answers are kept in the store, written with the request's
changes, so a replay after a SIGKILL still finds them. Payments retries a create
whose answer it lost with the same key instead of searching the list.

PaymentIntents are listed as Stripe lists them: newest first, and filtered by
`created` (`created[gte]=...`, also gt, lt, lte), which localstripe 1.15.10
refuses. Payments searches for a PaymentIntent it may have created by listing
those created since its payment row; oldest first and unfiltered, that search paged
through every PaymentIntent ever made and kept a busy emulator saturated.
"""

import argparse
import asyncio
import contextvars
import hashlib
import logging
import pickle
import time
from pathlib import Path

from aiohttp import web
from localstripe import resources, server
from localstripe.server import app, store

# Requests of these methods may change objects in place (without adding one): the store is
# written after each of them, as localstripe's own middleware did.
_CHANGING_METHODS = frozenset({"PUT", "POST", "DELETE"})
# Where an idempotent request's answer is kept in the store (beside `<object>:<id>` keys).
_IDEMPOTENCY_PREFIX = "idempotency:"


class _RequestChanges:
    """Whether the current request changed the store (set by the store, read by the middleware)."""

    def __init__(self) -> None:
        self.dirty = False
        # A task the request started (a delayed callback) keeps a copy of its context.
        self.finished = False


class _GroupWrites:
    """Writes of the store shared by every request waiting when one starts (group commit).

    A request that changed the store waits in `covering_now()` for a write that starts
    after it asked; one writer task writes for everyone then waiting. The pickling runs
    on the event loop, so no request changes the store while it is written.
    """

    def __init__(self, dump_to_disk) -> None:  # type: ignore[no-untyped-def]
        self._dump_to_disk = dump_to_disk
        self._waiting: list[asyncio.Future[None]] = []
        self._wanted = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None

    async def covering_now(self) -> None:
        """Return once a write that started after this call has finished (raise if it failed)."""
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._write_while_wanted())
        answer: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append(answer)
        self._wanted.set()
        await answer

    async def _write_while_wanted(self) -> None:
        while True:
            await self._wanted.wait()
            self._wanted.clear()
            waiting, self._waiting = self._waiting, []
            try:
                self._dump_to_disk(store, len(waiting))
            except Exception as failure:
                # Every waiter gets the write's failure (a 500 to its client), none a false success.
                for answer in waiting:
                    if not answer.done():
                        answer.set_exception(failure)
                continue
            for answer in waiting:
                if not answer.done():
                    answer.set_result(None)


_current_request: contextvars.ContextVar[_RequestChanges | None] = contextvars.ContextVar(
    "localstripe_request", default=None
)


_CREATED_BOUNDS = {"gt": int.__gt__, "gte": int.__ge__, "lt": int.__lt__, "lte": int.__le__}


def _created_filter(created):  # type: ignore[no-untyped-def]
    """`created` as Stripe takes it (a timestamp, or bounds gt/gte/lt/lte) as a predicate on timestamps."""
    if created is None:
        return lambda stamp: True
    bounds = created if isinstance(created, dict) else {"eq": created}
    checks = []
    for name, value in bounds.items():
        if name not in _CREATED_BOUNDS and name != "eq":
            raise resources.UserError(400, f"Bad request: created[{name}]")
        try:
            limit = int(value)
        except (TypeError, ValueError):
            raise resources.UserError(400, "Bad request: created must be a timestamp") from None
        compare = _CREATED_BOUNDS.get(name, int.__eq__)
        checks.append(lambda stamp, compare=compare, limit=limit: compare(int(stamp), limit))
    return lambda stamp: all(check(stamp) for check in checks)


def list_payment_intents_like_stripe() -> None:
    generic = resources.StripeObject._api_list_all.__func__

    def list_all(cls, url, limit=None, starting_after=None, created=None, **data):  # type: ignore[no-untyped-def]
        wanted = _created_filter(created)
        listed = generic(cls, url, limit, starting_after, **data)
        listed._list = [intent for intent in reversed(listed._list) if wanted(intent.created)]
        return listed

    resources.PaymentIntent._api_list_all = classmethod(list_all)


def _idempotency_error(status: int, message: str) -> web.Response:
    body = {"error": {"type": "idempotency_error", "message": message}}
    return web.json_response(body, status=status)


def honour_idempotency_keys() -> None:
    """Replay a POST's first answer for its `Idempotency-Key` (see the module docstring)."""
    running: set[str] = set()

    @web.middleware
    async def idempotent(request: web.Request, handler):  # type: ignore[no-untyped-def]
        key = request.headers.get("Idempotency-Key")
        if request.method != "POST" or not key:
            return await handler(request)
        # Keys are the API key's own, as at Stripe.
        scope = f"{request.headers.get('Authorization', '')}\0{key}"
        record = _IDEMPOTENCY_PREFIX + hashlib.sha256(scope.encode()).hexdigest()
        request_hash = hashlib.sha256(f"{request.path_qs}\0".encode() + await request.read()).hexdigest()
        saved = store.get(record)
        if saved is not None:
            first_hash, status, body = saved
            if first_hash != request_hash:
                return _idempotency_error(
                    400,
                    "Keys for idempotent requests can only be used with the same parameters they were first used with.",
                )
            replay = web.Response(status=status, body=body, content_type="application/json")
            replay.headers["Idempotent-Replayed"] = "true"
            return replay
        if record in running:
            return _idempotency_error(409, "There is currently another in-progress request using this Idempotent Key.")
        running.add(record)
        try:
            response = await handler(request)
        finally:
            running.discard(record)
        if (200 <= response.status < 300 or response.status == 402) and isinstance(response.body, bytes):
            store[record] = (request_hash, response.status, response.body)
        return response

    app.middlewares.insert(0, idempotent)


def write_store_once_per_request(store_path: Path) -> None:
    """Install the store's writes (see the module docstring): once per request, to `store_path`."""
    store_log = logging.getLogger("localstripe.store")

    def dump_to_disk(self: resources.Store, requests: int = 0) -> None:
        temporary = store_path.with_suffix(".tmp")
        started = time.monotonic()
        with open(temporary, "wb") as f:
            pickle.dump(self, f, protocol=pickle.HIGHEST_PROTOCOL)
            size = f.tell()
        temporary.replace(store_path)
        # What each write costs, and how many answers waited for it, is what limits the emulator's rate: say it.
        store_log.info(
            "store written: %d objects, %d bytes, %.1f ms, for %d requests",
            len(self),
            size,
            (time.monotonic() - started) * 1e3,
            requests,
        )

    def changed(self: resources.Store) -> None:
        request = _current_request.get()
        if request is None or request.finished:
            dump_to_disk(self)
        else:
            request.dirty = True

    def set_item(self: resources.Store, key: object, value: object) -> None:
        dict.__setitem__(self, key, value)
        changed(self)

    def del_item(self: resources.Store, key: object) -> None:
        dict.__delitem__(self, key)
        changed(self)

    writes = _GroupWrites(dump_to_disk)

    @web.middleware
    async def write_store_once(request: web.Request, handler):  # type: ignore[no-untyped-def]
        changes = _RequestChanges()
        token = _current_request.set(changes)
        try:
            return await handler(request)
        finally:
            _current_request.reset(token)
            changes.finished = True
            if changes.dirty or request.method in _CHANGING_METHODS:
                await writes.covering_now()

    resources.Store.dump_to_disk = dump_to_disk
    resources.Store.__setitem__ = set_item
    resources.Store.__delitem__ = del_item
    # This middleware writes instead of localstripe's, once, after everything a request changed
    # (an idempotent answer included) and before the answer is sent: so it is the outermost.
    app.middlewares.remove(server.save_store_middleware)
    app.middlewares.insert(0, write_store_once)


def load_store(store_path: Path) -> None:
    """The state kept by an earlier run, if any, into localstripe's store."""
    if not store_path.exists():
        return
    # Unpickling a dict subclass sets its items one by one: without this, each one rewrote
    # the whole file with the part loaded so far (a restart took 40 s at 2,400 objects, and a
    # SIGKILL during it left a truncated store).
    token = _current_request.set(_RequestChanges())
    try:
        with open(store_path, "rb") as f:
            loaded = pickle.load(f)
    finally:
        _current_request.reset(token)
    store.update(loaded)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--store", type=Path, required=True, help="pickle file holding the emulator's state")
    args = parser.parse_args()
    list_payment_intents_like_stripe()
    honour_idempotency_keys()
    write_store_once_per_request(args.store)
    load_store(args.store)

    output = logging.StreamHandler()
    for name in ("aiohttp.access", "localstripe.store"):
        logging.getLogger(name).setLevel(logging.INFO)
        logging.getLogger(name).addHandler(output)
    access = logging.getLogger("aiohttp.access")
    web.run_app(app, host=args.host, port=args.port, access_log=access, print=None)


if __name__ == "__main__":
    main()
