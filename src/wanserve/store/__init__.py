"""The system of record: SQLAlchemy 2 (async) + Alembic; SQLite embedded, Postgres in prod.

`await make_store(settings)` (or `await open_store(url)`) connects and applies the migrations.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wanserve.store.base import ApiKey, TaskPage, TaskStore

if TYPE_CHECKING:
    from wanserve.settings import Settings
    from wanserve.store.sql import SqlStore

__all__ = ["ApiKey", "TaskPage", "TaskStore", "default_url", "make_store", "open_store"]

_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg"}


def default_url(data_dir: Path) -> str:
    return f"sqlite+aiosqlite:///{Path(data_dir).resolve() / 'wanserve.db'}"


async def open_store(
    url: str, *, clock: Callable[[], float] = time.time, **engine_options: Any
) -> SqlStore:
    """Connect to `url` and migrate to head. `sqlite://` and `postgresql://` get async drivers.

    SQLite runs in WAL mode with a busy timeout and foreign keys on. `engine_options` go to
    `create_async_engine` (e.g. `connect_args` for a Postgres search_path).
    """
    from sqlalchemy.ext.asyncio import create_async_engine

    from wanserve.store.sql import SqlStore

    url = _with_async_driver(url)
    engine = create_async_engine(url, **engine_options)
    if engine.dialect.name == "sqlite":
        _tune_sqlite(engine.sync_engine)
    store = SqlStore(engine, clock=clock)
    try:
        await store.migrate()
    except BaseException:
        await store.close()
        raise
    return store


async def make_store(settings: Settings, *, clock: Callable[[], float] = time.time) -> SqlStore:
    """The store at `settings.store.url`, default SQLite at `<data_dir>/wanserve.db`, migrated."""
    url = settings.store.url
    if not url:
        Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
        url = default_url(settings.data_dir)
    return await open_store(url, clock=clock)


def _with_async_driver(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    return f"{_DRIVERS.get(scheme, scheme)}{sep}{rest}"


def _tune_sqlite(sync_engine: Any) -> None:
    from sqlalchemy import event

    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        # WAL: readers never block the writer; busy_timeout: writers wait instead of failing
        for pragma in (
            "journal_mode=WAL",
            "busy_timeout=10000",
            "foreign_keys=ON",
            "synchronous=NORMAL",
        ):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()
