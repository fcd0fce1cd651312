"""GroupWriter: writes that wait together commit together, and each caller keeps its own outcome."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from wanserve.store.writer import GroupWriter

pytestmark = pytest.mark.integration

_ROWS = sa.table("rows", sa.column("n", sa.Integer))


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[sa.Engine]:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'g.db'}")
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE rows (n INTEGER UNIQUE)"))
    yield engine
    engine.dispose()


@pytest.fixture
def commits(engine: sa.Engine) -> list[object]:
    """One entry per transaction committed on `engine` from now on."""
    made: list[object] = []
    sa.event.listen(engine, "commit", made.append)
    return made


@pytest.fixture
async def writer(engine: sa.Engine) -> AsyncIterator[GroupWriter]:
    group = GroupWriter(engine, max_batch=8)
    yield group
    await asyncio.to_thread(group.close)


def _insert(n: int) -> Callable[[Connection], int]:
    def work(conn: Connection) -> int:
        conn.execute(_ROWS.insert(), {"n": n})
        return n

    return work


def _rows(writer: GroupWriter) -> list[int]:
    with writer.engine.connect() as conn:
        return list(conn.scalars(sa.text("SELECT n FROM rows ORDER BY rowid")))


async def _behind_a_held_write(writer: GroupWriter) -> tuple[threading.Event, asyncio.Task[int]]:
    """A first write that holds the writer thread until the event is set, so that the writes
    queued meanwhile are taken together."""
    release, started = threading.Event(), threading.Event()

    def hold(conn: Connection) -> int:
        started.set()
        release.wait(10)
        return _insert(0)(conn)

    held = asyncio.create_task(writer.write(hold))
    await asyncio.to_thread(started.wait, 10)
    return release, held


async def test_writes_that_wait_together_share_a_commit_in_arrival_order(
    writer: GroupWriter, commits: list[object]
) -> None:
    release, held = await _behind_a_held_write(writer)
    waiting = [asyncio.create_task(writer.write(_insert(n))) for n in range(1, 17)]
    await asyncio.sleep(0.05)
    release.set()
    assert await held == 0
    assert await asyncio.gather(*waiting) == list(range(1, 17))
    assert _rows(writer) == list(range(17))
    assert len(commits) == 3  # the held write alone, then 8 + 8 (max_batch)


async def test_a_failure_stays_with_its_own_caller(writer: GroupWriter) -> None:
    def half_then_fail(conn: Connection) -> None:
        conn.execute(_ROWS.insert(), {"n": 100})
        raise ValueError("no")

    release, held = await _behind_a_held_write(writer)
    before = asyncio.create_task(writer.write(_insert(1)))
    failing = asyncio.create_task(writer.write(half_then_fail))
    duplicate = asyncio.create_task(writer.write(_insert(1)))  # the database refuses this one
    after = asyncio.create_task(writer.write(_insert(2)))
    await asyncio.sleep(0.05)
    release.set()
    await held
    assert await before == 1
    with pytest.raises(ValueError, match="no"):
        await failing
    with pytest.raises(sa.exc.IntegrityError):
        await duplicate
    assert await after == 2
    assert _rows(writer) == [0, 1, 2]  # nothing of the failed ones, the rest in order


async def test_a_cancelled_caller_does_not_undo_its_write_or_others(writer: GroupWriter) -> None:
    release, held = await _behind_a_held_write(writer)
    gone = asyncio.create_task(writer.write(_insert(1)))
    kept = asyncio.create_task(writer.write(_insert(2)))
    await asyncio.sleep(0.05)
    gone.cancel()
    release.set()
    await held
    assert await kept == 2
    assert gone.cancelled()
    assert _rows(writer) == [0, 1, 2]  # taken before the cancel: committed all the same
