"""GroupWriter: SQLite's one writer, on a thread, committing the transactions that wait together.

SQLite takes one writer at a time, so a process's write transactions queue anyway. Run one by
one, each pays a pool checkout, a BEGIN, a commit and a wake-up of the event loop, and with 16
requests in flight that overhead (and the GIL hand-offs between the loop and the thread) was
most of a create's cost. The writer thread instead takes every transaction waiting when it is
free (up to `max_batch`, in arrival order) and runs them in one database transaction: a group
commit. Measured with 16 creates in flight: 0.50-0.57 ms a create one by one, 0.20-0.26 ms grouped.

Each caller still sees its own transaction: a result only after the commit that holds it, and
when one function of a group raises, the whole group is rolled back and each function runs again
alone, in order, so the failure stays with its own caller. Functions must therefore be safe to
run twice (all SqlStore's are: they only read and write through the connection they are given).
"""

from __future__ import annotations

import asyncio
import collections
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from sqlalchemy.engine import Connection, Engine

__all__ = ["GroupWriter"]

T = TypeVar("T")

_Work = Callable[[Connection], Any]
_Item = tuple[_Work, "asyncio.Future[Any]"]
_Outcome = tuple["asyncio.Future[Any]", Any, BaseException | None]


class GroupWriter:
    def __init__(self, engine: Engine, *, max_batch: int = 64) -> None:
        self.engine = engine
        self.max_batch = max_batch
        self._waiting: collections.deque[_Item] = collections.deque()
        self._mutex = threading.Lock()
        self._draining = False
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="wanserve-sqlite-writer")

    async def write(self, work: Callable[[Connection], T]) -> T:
        """`work(connection)`'s result, once the transaction that ran it has committed."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        with self._mutex:
            self._waiting.append((work, future))
            start, self._draining = not self._draining, True
        if start:
            self._thread.submit(self._drain)
        return await future

    def close(self) -> None:
        """Wait for the transactions already taken, then stop the thread (blocking)."""
        self._thread.shutdown(wait=True)

    def _drain(self) -> None:
        while batch := self._take():
            _deliver(self._commit(batch))

    def _take(self) -> list[_Item]:
        with self._mutex:
            count = min(len(self._waiting), self.max_batch)
            batch = [self._waiting.popleft() for _ in range(count)]
            self._draining = bool(batch)
        return batch

    def _commit(self, batch: list[_Item]) -> list[_Outcome]:
        try:
            with self.engine.begin() as connection:
                results = [work(connection) for work, _ in batch]
        except BaseException as exc:  # every caller gets an answer, whatever went wrong
            if len(batch) == 1:
                return [(batch[0][1], None, exc)]
            return [outcome for item in batch for outcome in self._commit([item])]
        return [(future, result, None) for (_, future), result in zip(batch, results, strict=True)]


def _deliver(outcomes: list[_Outcome]) -> None:
    """Hand each outcome to its caller's event loop (a loop that has closed is skipped)."""
    by_loop: dict[asyncio.AbstractEventLoop, list[_Outcome]] = {}
    for outcome in outcomes:
        by_loop.setdefault(outcome[0].get_loop(), []).append(outcome)
    for loop, mine in by_loop.items():
        try:
            loop.call_soon_threadsafe(_settle, mine)
        except RuntimeError:  # the loop closed while its caller waited: nobody is left to tell
            pass


def _settle(outcomes: list[_Outcome]) -> None:
    for future, result, error in outcomes:
        if future.done():  # the caller was cancelled; its transaction committed all the same
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)
