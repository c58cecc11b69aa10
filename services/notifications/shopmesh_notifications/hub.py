"""Live fan-out of stored notifications to the streams open on this replica.

Whichever replica's consumer stores a notification, its transaction sends a
PostgreSQL NOTIFY (see store.insert_notification) on commit; every replica's
hub LISTENs on a dedicated connection, and hands the notification to the
streams of that user open here. A NOTIFY carries only ids: the hub reads the
row once per notification, and only if someone here watches that user.

Each stream has a bounded queue: a client that falls behind by more than its
size is closed (RESOURCE_EXHAUSTED) instead of holding memory or slowing the
others, who are fed without waiting on anyone; and a user holds at most
`max_streams_per_user` streams here (one more is RESOURCE_EXHAUSTED), so one
token cannot pile up subscriptions. If the listening connection is
lost, every open stream ends with UNAVAILABLE (it may have missed a NOTIFY;
the client reconnects and lists what it missed) and the hub reconnects with
backoff; while it is not listening, new streams are refused with UNAVAILABLE.
On drain, every stream ends with UNAVAILABLE so clients reconnect elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque

import asyncpg
from prometheus_client import CollectorRegistry, Counter, Gauge

from shopmesh_notifications.feed import Feed
from shopmesh_notifications.records import NotificationRecord
from shopmesh_notifications.store import NOTIFY_CHANNEL
from shopmesh_platform.errors import DomainError, ResourceExhausted, Unavailable
from shopmesh_platform.retry import keep_running

logger = logging.getLogger("shopmesh.notifications.hub")
DOMAIN = "notifications"
# asyncpg notices a dead connection only when it uses it: the listener probes it this often.
LIVENESS_PROBE_SECONDS = 5.0


class Subscription:
    """One open stream's queue of notifications, and why it ended (once it has)."""

    def __init__(self, user_id: str, capacity: int) -> None:
        self.user_id = user_id
        self._capacity = capacity
        self._items: deque[NotificationRecord] = deque()
        self._ready = asyncio.Event()
        self.error: DomainError | None = None

    def offer(self, record: NotificationRecord) -> None:
        """Queue `record` without waiting; a full queue ends the stream."""
        if self.error is not None:
            return
        if len(self._items) >= self._capacity:
            self.close(
                ResourceExhausted(
                    "the stream fell too far behind; reconnect and list what was missed",
                    reason="STREAM_QUEUE_FULL",
                    domain=DOMAIN,
                )
            )
            return
        self._items.append(record)
        self._ready.set()

    def close(self, error: DomainError) -> None:
        """End the stream with `error` (the first reason wins)."""
        if self.error is None:
            self.error = error
        self._ready.set()

    async def next(self, timeout: float) -> NotificationRecord | None:
        """The next notification, or None after `timeout` seconds; raises the error the stream ended with."""
        if self.error is not None:
            raise self.error
        if not self._items:
            self._ready.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ready.wait(), timeout=max(timeout, 0.0))
            if self.error is not None:
                raise self.error
        return self._items.popleft() if self._items else None


class HubMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.open = Gauge(
            "notification_streams_open", "WatchNotifications streams open on this replica.", registry=registry
        )
        self.closed = Counter(
            "notification_streams_closed_total",
            "Streams ended by the server, by reason.",
            ("reason",),
            registry=registry,
        )
        self.delivered = Counter(
            "notification_stream_deliveries_total", "Notifications handed to open streams.", registry=registry
        )


class NotificationHub:
    """Run `run()` as a worker of the service; `subscribe()` per stream; `drain()` on shutdown."""

    def __init__(
        self, dsn: str, feed: Feed, *, queue_size: int, max_streams_per_user: int, registry: CollectorRegistry
    ) -> None:
        self._dsn = dsn
        self._feed = feed
        self._queue_size = queue_size
        self._max_streams_per_user = max_streams_per_user
        self._metrics = HubMetrics(registry)
        self._streams: dict[str, set[Subscription]] = {}
        self._arrivals: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        self._listening = False
        self._draining = False

    def subscribe(self, user_id: str) -> Subscription:
        if self._draining:
            raise Unavailable("the server is draining; reconnect", reason="DRAINING", domain=DOMAIN)
        if not self._listening:
            raise Unavailable("the live feed is not connected yet; retry", reason="FEED_NOT_LISTENING", domain=DOMAIN)
        if len(self._streams.get(user_id, ())) >= self._max_streams_per_user:
            raise ResourceExhausted(
                f"at most {self._max_streams_per_user} open streams per user; close one first",
                reason="TOO_MANY_STREAMS",
                domain=DOMAIN,
            )
        subscription = Subscription(user_id, self._queue_size)
        self._streams.setdefault(user_id, set()).add(subscription)
        self._metrics.open.inc()
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        streams = self._streams.get(subscription.user_id)
        if streams is None or subscription not in streams:
            return
        streams.discard(subscription)
        if not streams:
            del self._streams[subscription.user_id]
        self._metrics.open.dec()
        if subscription.error is not None:
            self._metrics.closed.labels(subscription.error.reason or "error").inc()

    def _close_all(self, error: DomainError) -> None:
        for streams in self._streams.values():
            for subscription in streams:
                subscription.close(error)

    async def drain(self) -> None:
        """End every stream (UNAVAILABLE: reconnect elsewhere) and refuse new ones."""
        self._draining = True
        self._close_all(Unavailable("the server is draining; reconnect", reason="DRAINING", domain=DOMAIN))

    async def run(self) -> None:
        await keep_running("notification listener", self._listen, logger)

    def _on_notify(self, connection: object, pid: int, channel: str, payload: str) -> None:
        user_id, _, notification_id = payload.partition(" ")
        if user_id in self._streams:
            self._arrivals.put_nowait((user_id, notification_id))

    async def _listen(self) -> None:
        connection = await asyncpg.connect(self._dsn)
        lost = asyncio.Event()
        connection.add_termination_listener(lambda _: lost.set())
        dispatcher = asyncio.create_task(self._dispatch(), name="notification-dispatch")
        try:
            await connection.add_listener(NOTIFY_CHANNEL, self._on_notify)
            self._listening = True
            logger.info("listening for stored notifications")
            while not lost.is_set():
                try:
                    await asyncio.wait_for(lost.wait(), timeout=LIVENESS_PROBE_SECONDS)
                except TimeoutError:
                    await connection.fetchval("SELECT 1", timeout=LIVENESS_PROBE_SECONDS)
            raise ConnectionError("the listening connection was closed")
        finally:
            self._listening = False
            dispatcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await dispatcher
            # A NOTIFY may have been missed: the streams must not look complete.
            self._close_all(
                Unavailable("the live feed was interrupted; reconnect", reason="FEED_INTERRUPTED", domain=DOMAIN)
            )
            with contextlib.suppress(Exception):
                await connection.close(timeout=2)

    async def _dispatch(self) -> None:
        """Read each announced notification once and hand it to its user's streams, in order."""
        while True:
            user_id, notification_id = await self._arrivals.get()
            if user_id not in self._streams:
                continue
            try:
                record = await self._feed.get(notification_id)
            except Exception:
                # Those streams would silently miss it: end them, the client reconnects and lists.
                logger.warning("could not read an announced notification", exc_info=True)
                for subscription in list(self._streams.get(user_id, ())):
                    subscription.close(
                        Unavailable(
                            "the live feed was interrupted; reconnect", reason="FEED_INTERRUPTED", domain=DOMAIN
                        )
                    )
                continue
            if record is None:
                continue
            for subscription in list(self._streams.get(user_id, ())):
                subscription.offer(record)
                self._metrics.delivered.inc()
