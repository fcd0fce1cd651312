"""The system of record: SQLAlchemy 2 + Alembic; SQLite embedded, Postgres in prod.

`await make_store(settings)` (or `await open_store(url)`) connects and applies the migrations.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wanserve.domain.types import Clock
from wanserve.store.base import ApiKey, TaskPage, TaskStore

if TYPE_CHECKING:
    from wanserve.settings import Settings, StoreSettings
    from wanserve.store.sql import SqlStore

__all__ = [
    "ApiKey",
    "TaskPage",
    "TaskStore",
    "default_url",
    "make_store",
    "open_store",
    "pool_options",
]


def default_url(data_dir: Path) -> str:
    return f"sqlite:///{Path(data_dir).resolve() / 'wanserve.db'}"


async def open_store(url: str, *, clock: Clock = time.time, **engine_options: Any) -> SqlStore:
    """Connect to `url` and migrate to head.

    SQLite runs in WAL mode with a busy timeout and foreign keys on, on threads of its own;
    `postgresql://` gets asyncpg (store/database.py). `engine_options` go to SQLAlchemy's engine
    (e.g. `connect_args` for a Postgres search_path).
    """
    from wanserve.store.database import connect
    from wanserve.store.sql import SqlStore

    store = SqlStore(connect(url, **engine_options), clock=clock)
    try:
        await store.migrate()
    except BaseException:
        await store.close()
        raise
    return store


async def make_store(settings: Settings, *, clock: Clock = time.time) -> SqlStore:
    """The store at `settings.store.url`, default SQLite at `<data_dir>/wanserve.db`, migrated.

    A server database gets a pool of `settings.store.pool_size` connections (SQLite has its own
    two threads: store/database.py).
    """
    url = settings.store.url
    if not url:
        Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
        url = default_url(settings.data_dir)
    return await open_store(url, clock=clock, **pool_options(settings.store, url))


def pool_options(store: StoreSettings, url: str) -> dict[str, Any]:
    """SQLAlchemy engine options for the connection pool of a server database at `url`."""
    if url.startswith("sqlite"):
        return {}
    return {"pool_size": store.pool_size, "max_overflow": store.pool_overflow}
