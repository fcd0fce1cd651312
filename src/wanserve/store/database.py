"""How a store reaches its database: a `Database` runs one sync function as one transaction.

Store methods are written once, as functions of a sync SQLAlchemy `Connection`, and a `Database`
runs each of them where its driver is fastest:

- SQLite (`ThreadedSqlite`): the stdlib driver with one writer thread and one reader thread. A
  whole transaction is one hop from the event loop to its thread and back (through aiosqlite,
  each statement, cursor, commit and pool reset was a hop of its own: about eight for a create).
  The writer thread is also SQLite's single writer, so writers of one process queue there, in
  order, and never meet the busy handler; that still arbitrates between processes (e.g.
  `wanserve api` and `wanserve worker` on one file). The writes waiting together are committed
  together (store/writer.py). WAL lets the reader run beside the writer.
- Postgres (`AsyncDatabase`): an asyncpg `AsyncEngine`; the function runs in its greenlet with
  `AsyncConnection.run_sync`, and writers run in parallel on the pool.

`connect(url)` picks one. A `sqlite+aiosqlite://` URL (the form Alembic's command line takes)
names the same file as `sqlite://`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from wanserve.store.writer import GroupWriter

__all__ = ["AsyncDatabase", "Database", "ThreadedSqlite", "connect"]

T = TypeVar("T")

_ASYNC_DRIVERS = {"postgresql": "postgresql+asyncpg"}
_SQLITE_PRAGMAS = (
    "journal_mode=WAL",  # readers never block the writer
    "busy_timeout=10000",  # a writer of another process waits instead of failing
    "foreign_keys=ON",
    "synchronous=NORMAL",  # WAL stays consistent; a power cut may lose the last commits
)


class Database(Protocol):
    """Runs sync SQLAlchemy work against one database."""

    url: sa.URL
    dialect_name: str  # "sqlite", "postgresql"

    async def read(self, work: Callable[[Connection], T]) -> T:
        """`work(connection)` outside a write transaction; its result."""
        ...

    async def write(self, work: Callable[[Connection], T]) -> T:
        """`work(connection)` in a transaction, committed when it returns, rolled back when it
        raises (the exception propagates). `work` may be run a second time after a rollback
        (store/writer.py), so it must act only through the connection."""
        ...

    async def execute(self, statement: sa.Executable, params: dict[str, Any]) -> None:
        """One statement as a transaction of its own (autocommit on a server database: no BEGIN
        and COMMIT round trips)."""
        ...

    async def dispose(self) -> None:
        """Close every connection (and thread); the Database is unusable afterwards."""
        ...


class ThreadedSqlite:
    """SQLite through the stdlib driver, on a writer thread and a reader thread."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.url, self.dialect_name = engine.url, engine.dialect.name
        self._writer = GroupWriter(engine)
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="wanserve-sqlite-reader")

    async def read(self, work: Callable[[Connection], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._reader, self._read, work)

    async def write(self, work: Callable[[Connection], T]) -> T:
        return await self._writer.write(work)

    async def execute(self, statement: sa.Executable, params: dict[str, Any]) -> None:
        await self._writer.write(lambda connection: connection.execute(statement, params))

    async def dispose(self) -> None:
        await asyncio.to_thread(self._shutdown)

    def _read(self, work: Callable[[Connection], T]) -> T:
        with self.engine.connect() as connection:
            return work(connection)

    def _shutdown(self) -> None:
        self._reader.shutdown(wait=True)
        self._writer.close()
        self.engine.dispose()


class AsyncDatabase:
    """A server database (Postgres) through an async driver and its connection pool."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.url, self.dialect_name = engine.url, engine.dialect.name
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")  # same pool

    async def read(self, work: Callable[[Connection], T]) -> T:
        async with self.engine.connect() as connection:
            return await connection.run_sync(work)

    async def write(self, work: Callable[[Connection], T]) -> T:
        async with self.engine.begin() as connection:
            return await connection.run_sync(work)

    async def execute(self, statement: sa.Executable, params: dict[str, Any]) -> None:
        async with self._autocommit.connect() as connection:
            await connection.execute(statement, params)

    async def dispose(self) -> None:
        await self.engine.dispose()


def connect(url: str | sa.URL, **engine_options: Any) -> Database:
    """A Database for `url`: SQLite (any driver named) on threads, `postgresql://` on asyncpg.

    `engine_options` go to SQLAlchemy's engine (e.g. `connect_args` for a Postgres search_path).
    """
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = sa.create_engine(parsed.set(drivername="sqlite"), **engine_options)
        sa.event.listen(engine, "connect", _tune_sqlite)
        return ThreadedSqlite(engine)
    drivername = _ASYNC_DRIVERS.get(parsed.drivername, parsed.drivername)
    return AsyncDatabase(create_async_engine(parsed.set(drivername=drivername), **engine_options))


def _tune_sqlite(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    for pragma in _SQLITE_PRAGMAS:
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()
