"""Channels: every live subscription of a process on one pub/sub connection.

A redis-py `PubSub` holds a connection of its own and drops it when closed, so one per listener
(each SSE stream, each running task's cancel watcher) opened and closed a connection per use: a
TCP handshake and a HELLO every time, about a tenth of the dispatcher's work per task with an
instant engine, and one server connection per listener. `Channels` keeps one `PubSub` for the
process: SUBSCRIBE when a channel's first listener joins, UNSUBSCRIBE when its last leaves, and
one reader task hands each message to every inbox of its channel.

A join returns once the server has confirmed the SUBSCRIBE it waits for, so a message published
after that reaches the listener. When the connection fails for good, each inbox receives the
error (its iterator raises BackendUnavailable, as a lone subscription did: SSE falls back to the
store, running tasks to their heartbeats) and the next join starts over on a new connection.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.client import PubSub

from wanserve.domain.errors import BackendUnavailable
from wanserve.queue.wire import LOST, guard, text

__all__ = ["Channels", "Inbox"]

log = logging.getLogger(__name__)

Inbox = asyncio.Queue[str | BaseException]  # a listener's messages, or the error that ended them


class Channels:
    """Listeners of pub/sub channels on one Redis client, sharing one connection."""

    def __init__(self, client: aioredis.Redis) -> None:
        self._client = client
        self._pubsub: PubSub | None = None
        self._reader: asyncio.Task[None] | None = None
        self._inboxes: dict[str, set[Inbox]] = {}
        # Per channel, one future per SUBSCRIBE sent and not yet confirmed, oldest first: the
        # server confirms in order, so a confirmation never answers a later SUBSCRIBE.
        self._unconfirmed: dict[str, collections.deque[asyncio.Future[None]]] = {}
        self._confirmed: dict[str, asyncio.Future[None]] = {}
        self._lock = asyncio.Lock()  # one (un)subscribe or set-up at a time

    async def join(self, channel: str, inbox: Inbox, timeout_s: float = 10.0) -> None:
        """Deliver `channel`'s messages to `inbox` from the time this returns."""
        async with self._lock:
            pubsub = self._pubsub or self._open()
            listeners = self._inboxes.setdefault(channel, set())
            listeners.add(inbox)
            if len(listeners) == 1:
                confirmed = asyncio.get_running_loop().create_future()
                self._unconfirmed.setdefault(channel, collections.deque()).append(confirmed)
                self._confirmed[channel] = confirmed
                try:
                    await guard(pubsub.subscribe(channel))
                except BackendUnavailable as error:  # the connection is gone: start over
                    await self._reset(error)
                    raise
                except BaseException:  # cancelled: no confirmation to wait for
                    self._unconfirmed[channel].remove(confirmed)
                    await self._forget(channel, inbox)
                    raise
                if self._reader is None:  # the connection exists once a command was sent
                    self._reader = asyncio.create_task(self._read(pubsub))
            confirmed = self._confirmed[channel]
        try:
            async with asyncio.timeout(timeout_s):
                await asyncio.shield(confirmed)
        except BaseException:
            await self.leave(channel, inbox)
            raise

    async def leave(self, channel: str, inbox: Inbox) -> None:
        """Stop delivering to `inbox` (UNSUBSCRIBE when it was the channel's last)."""
        async with self._lock:
            await self._forget(channel, inbox)

    async def close(self) -> None:
        """End the reader and the connection; inboxes still joined get BackendUnavailable."""
        async with self._lock:
            await self._reset(BackendUnavailable("the queue client closed"))

    async def _forget(self, channel: str, inbox: Inbox) -> None:
        listeners = self._inboxes.get(channel)
        if listeners is None or inbox not in listeners:
            return
        listeners.discard(inbox)
        if listeners:
            return
        del self._inboxes[channel]
        self._confirmed.pop(channel, None)
        if self._pubsub is not None:
            with contextlib.suppress(*LOST):  # a lost connection has no subscriptions left
                await self._pubsub.unsubscribe(channel)

    def _open(self) -> PubSub:
        self._pubsub = self._client.pubsub()
        return self._pubsub

    async def _read(self, pubsub: PubSub) -> None:
        try:
            while True:
                message = await pubsub.get_message(timeout=None)
                if message is not None:
                    self._route(message)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("pub/sub connection lost: %s", exc)
            async with self._lock:
                if self._pubsub is pubsub:
                    self._reader = None  # ending now; _reset must not wait for itself
                    await self._reset(BackendUnavailable(f"queue server unreachable: {exc}"))

    def _route(self, message: dict[str, Any]) -> None:
        kind, channel = message.get("type"), text(message.get("channel", b""))
        if kind == "message":
            data = text(message["data"])
            for inbox in self._inboxes.get(channel, ()):
                inbox.put_nowait(data)
        elif kind == "subscribe" and (waiting := self._unconfirmed.get(channel)):
            confirmed = waiting.popleft()
            if not waiting:
                del self._unconfirmed[channel]
            if not confirmed.done():
                confirmed.set_result(None)

    async def _reset(self, error: BaseException) -> None:
        pubsub, reader = self._pubsub, self._reader
        self._pubsub = self._reader = None
        for inboxes in self._inboxes.values():
            for inbox in inboxes:
                inbox.put_nowait(error)
        for waiting in self._unconfirmed.values():
            for confirmed in waiting:
                if not confirmed.done():
                    confirmed.set_exception(error)
                    confirmed.exception()  # its joiner (if still waiting) raises it; no log
        self._inboxes.clear()
        self._unconfirmed.clear()
        self._confirmed.clear()
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, *LOST):
                await reader
        if pubsub is not None:
            with contextlib.suppress(*LOST):
                await pubsub.aclose()
