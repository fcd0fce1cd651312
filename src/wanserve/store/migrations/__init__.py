"""Alembic migrations of the store, shipped inside the package and applied at start-up.

Several processes may start at once on one database (`wanserve up` starts the API and a worker),
so `upgrade` serialises: within a process (Alembic's `context` is process-global), and across
processes with a Postgres advisory lock or, for SQLite, an flock on `<database>.migrate.lock`.
"""

from __future__ import annotations

import asyncio
import fcntl
import functools
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection

from wanserve.store.database import Database

__all__ = ["alembic_config", "upgrade"]

_STORE = Path(__file__).resolve().parent.parent
_PG_LOCK_KEY = 0x77616E7365727665  # "wanserve": the advisory lock taken while migrating
_LOCKS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
    weakref.WeakKeyDictionary()
)


def alembic_config() -> Config:
    """The shipped alembic.ini, with script_location resolved inside the installed package."""
    config = Config(str(_STORE / "alembic.ini"))
    config.set_main_option("script_location", str(_STORE / "migrations"))
    return config


async def upgrade(database: Database, revision: str = "head") -> None:
    """Bring `database` to `revision` (idempotent: no-op when already there)."""
    lock = _LOCKS.setdefault(asyncio.get_running_loop(), asyncio.Lock())
    async with lock, _sqlite_file_lock(database):
        await database.write(functools.partial(_upgrade, revision=revision))


def _upgrade(connection: Connection, revision: str) -> None:
    if connection.dialect.name == "postgresql":
        connection.execute(sa.select(sa.func.pg_advisory_xact_lock(_PG_LOCK_KEY)))
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


@asynccontextmanager
async def _sqlite_file_lock(database: Database) -> AsyncIterator[None]:
    path = database.url.database
    if database.dialect_name != "sqlite" or not path or path == ":memory:":
        yield
        return
    with open(f"{path}.migrate.lock", "a") as handle:
        await asyncio.to_thread(fcntl.flock, handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
