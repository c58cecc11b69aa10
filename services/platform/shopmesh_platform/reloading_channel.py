"""`ReloadingChannel`: a client channel that follows certificate renewal.

gRPC Python fixes a channel's credentials when the channel is created, and its
connections are made lazily, so a long-lived channel would present its start
certificate long after it expired. This channel holds a real one built from the
current certificate files (shopmesh_platform.certificates); when the files have
changed, the next call builds a new channel from them, and the old one is
closed once its in-flight calls have finished (at most `drain_seconds`). Stubs
made on it keep working: their methods look the current channel up per call.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import grpc
from grpc import aio

from shopmesh_platform.certificates import CertificateFiles, TlsMaterial

ChannelFactory = Callable[[TlsMaterial], aio.Channel]
# Enough for any call the mesh declares (method timeouts are seconds).
DEFAULT_DRAIN_SECONDS = 60.0


class ReloadingChannel(aio.Channel):  # type: ignore[misc]
    """See the module docstring. Use it on the event loop it was created on, like any aio channel."""

    def __init__(
        self, certificates: CertificateFiles, factory: ChannelFactory, *, drain_seconds: float = DEFAULT_DRAIN_SECONDS
    ) -> None:
        self._certificates = certificates
        self._factory = factory
        self._drain_seconds = drain_seconds
        material = certificates.current()
        self._channel = factory(material)
        self._generation = material.generation
        self._retiring: dict[aio.Channel, asyncio.Task[None]] = {}
        self._closed = False

    def current(self) -> aio.Channel:
        """The channel for a new call: rebuilt first if the certificate files changed."""
        if self._closed:
            return self._channel
        material = self._certificates.current()
        if material.generation != self._generation:
            old = self._channel
            self._channel, self._generation = self._factory(material), material.generation
            self._retire(old)
        return self._channel

    def _retire(self, old: aio.Channel) -> None:
        task = asyncio.get_running_loop().create_task(old.close(self._drain_seconds), name="close-renewed-channel")
        self._retiring[old] = task
        task.add_done_callback(lambda _: self._retiring.pop(old, None))

    async def close(self, grace: float | None = None) -> None:
        self._closed = True
        retiring = dict(self._retiring)
        for task in retiring.values():
            task.cancel()
        for task in retiring.values():
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await asyncio.gather(*(channel.close(grace) for channel in (*retiring, self._channel)))

    async def __aenter__(self) -> ReloadingChannel:
        return self

    async def __aexit__(self, exc_type: Any, exc_val: Any, exc_tb: Any) -> None:
        await self.close()

    def get_state(self, try_to_connect: bool = False) -> grpc.ChannelConnectivity:
        return self.current().get_state(try_to_connect)

    async def wait_for_state_change(self, last_observed_state: grpc.ChannelConnectivity) -> None:
        await self._channel.wait_for_state_change(last_observed_state)

    async def channel_ready(self) -> None:
        await self.current().channel_ready()

    # What stubs call: each method's multicallable follows the current channel.
    def unary_unary(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return _Follower(self, "unary_unary", method, args, kwargs)

    def unary_stream(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return _Follower(self, "unary_stream", method, args, kwargs)

    def stream_unary(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return _Follower(self, "stream_unary", method, args, kwargs)

    def stream_stream(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return _Follower(self, "stream_stream", method, args, kwargs)


class _Follower:
    """A method's multicallable on the current channel, made again when the channel is replaced."""

    def __init__(
        self, owner: ReloadingChannel, kind: str, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        self._owner = owner
        self._make = (kind, method, args, kwargs)
        self._channel: Any = None
        self._callable: Any = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        channel = self._owner.current()
        if channel is not self._channel:
            kind, method, make_args, make_kwargs = self._make
            self._callable = getattr(channel, kind)(method, *make_args, **make_kwargs)
            self._channel = channel
        return self._callable(*args, **kwargs)
