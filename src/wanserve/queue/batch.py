"""ScriptBatch: the calls of one Lua script that arrive together, sent as one pipeline.

Under load the API enqueues many tasks at once, and through redis-py each call costs a pool
checkout, a packed command, a wake-up of the event loop and a parsed reply: more CPU than the
script itself. A ScriptBatch sends the first call at once; the calls that arrive while it is in
flight wait together and go out as one pipeline (one write, one round trip) when it returns, so
batches grow with the load and a lone call waits for nothing. Each script still runs atomically
on its own, in arrival order; only the transport is shared.

Each caller gets its own result, or its own error: a reply error stays with its call, a lost
connection fails every call of that batch. A server that has forgotten the script (NOSCRIPT,
after a restart) has the calls retried one by one through `AsyncScript`, which loads it again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

__all__ = ["ScriptBatch"]

_Call = tuple[Sequence[Any], "asyncio.Future[Any]"]


class ScriptBatch:
    """Runs `script` (no KEYS; everything in ARGV) for each `call`, batching concurrent calls."""

    def __init__(
        self, client: aioredis.Redis, script: AsyncScript, *, max_batch: int = 128
    ) -> None:
        self.client = client
        self.script = script
        self.max_batch = max_batch
        self._waiting: list[_Call] = []
        self._sender: asyncio.Task[None] | None = None

    async def call(self, args: Sequence[Any]) -> Any:
        """The script's reply for `args`; raises what the call raised (redis-py's errors)."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting.append((args, future))
        if self._sender is None:
            self._sender = asyncio.create_task(self._send_all(), name="wanserve-script-batch")
            self._sender.add_done_callback(self._sender_done)
        return await future

    async def _send_all(self) -> None:
        while self._waiting:
            batch = self._waiting[: self.max_batch]
            del self._waiting[: self.max_batch]
            await self._send(batch)
        self._sender = None  # now, not in a callback: the next call must start a new sender

    def _sender_done(self, sender: asyncio.Task[None]) -> None:
        """A sender that did not finish its work (cancelled: the loop is closing) cancels the
        calls still waiting. A callback, as a sender cancelled before it ran runs none of its
        own code."""
        if self._sender is not sender:  # it finished its work and let go (`_send_all`)
            return
        self._sender = None
        for _, future in self._waiting:
            future.cancel()
        self._waiting.clear()

    async def _send(self, batch: list[_Call]) -> None:
        try:
            if len(batch) == 1:
                replies: list[Any] = [await self.script(args=batch[0][0])]
            else:
                replies = await self._pipeline([args for args, _ in batch])
        except BaseException as exc:
            for _, future in batch:
                _settle(future, exc)
            if isinstance(exc, Exception):
                return
            raise  # the sender itself was cancelled (the loop is closing): its callers are too
        for (args, future), reply in zip(batch, replies, strict=True):
            if isinstance(reply, NoScriptError):
                try:
                    reply = await self.script(args=args)
                except Exception as exc:
                    reply = exc
            _settle(future, reply)

    async def _pipeline(self, calls: list[Sequence[Any]]) -> list[Any]:
        # evalsha on the pipeline, not the script object: that would make every execute ask
        # the server whether it has the script first (SCRIPT EXISTS), a second round trip.
        async with self.client.pipeline(transaction=False) as pipe:
            for args in calls:
                pipe.evalsha(self.script.sha, 0, *args)
            return await pipe.execute(raise_on_error=False)


def _settle(future: asyncio.Future[Any], outcome: Any) -> None:
    if future.done():  # its caller was cancelled; the script ran all the same
        return
    if isinstance(outcome, asyncio.CancelledError):
        future.cancel()
    elif isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)
