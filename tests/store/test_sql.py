"""SqlStore behaviour beyond the contract: SQLite tuning, durability, query plans, factories."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import sqlite
from sqlalchemy.ext.asyncio import create_async_engine

from tests.fixtures.store import make_task
from wanserve.domain.errors import BackendUnavailable
from wanserve.settings import Settings
from wanserve.store import make_store, open_store
from wanserve.store.sql import SqlStore, page_query

pytestmark = pytest.mark.integration


async def test_sqlite_runs_in_wal_with_foreign_keys(tmp_path: Path) -> None:
    store = await open_store(f"sqlite:///{tmp_path / 'w.db'}")
    try:
        async with store.engine.connect() as conn:
            assert await conn.scalar(sa.text("PRAGMA journal_mode")) == "wal"
            assert await conn.scalar(sa.text("PRAGMA foreign_keys")) == 1
            assert await conn.scalar(sa.text("PRAGMA busy_timeout")) > 0
    finally:
        await store.close()


async def test_tasks_survive_a_reopen(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'r.db'}"
    store = await open_store(url)
    task = await store.create_task(make_task("kept"))
    await store.save_task(task, [("step", {"step": 1})])
    await store.close()
    store = await open_store(url)
    try:
        assert await store.get_task("kept") == task
        assert [e.id for e in await store.list_events("kept")] == [1, 2]
    finally:
        await store.close()


async def test_make_store_defaults_to_sqlite_in_the_data_dir(tmp_path: Path) -> None:
    store = await make_store(Settings(data_dir=tmp_path / "data"))
    try:
        assert store.engine.dialect.name == "sqlite"
        await store.create_task(make_task("t1"))
    finally:
        await store.close()
    assert (tmp_path / "data" / "wanserve.db").is_file()


async def test_unreachable_database_is_backend_unavailable() -> None:
    store = SqlStore(create_async_engine("postgresql+asyncpg://postgres@127.0.0.1:9/none"))
    try:
        with pytest.raises(BackendUnavailable):
            await store.ping()
        with pytest.raises(BackendUnavailable):
            await store.migrate()
    finally:
        await store.close()


@pytest.mark.parametrize("owner", ["k1", None])
@pytest.mark.parametrize("order", ["asc", "desc"])
@pytest.mark.parametrize("cursor", [None, 500])
async def test_list_page_is_an_index_range_scan(
    tmp_path: Path, owner: str | None, order: str, cursor: int | None
) -> None:
    """No full scan and no sort, so a page costs the same with 100 or 100k tasks."""
    store = await open_store(f"sqlite:///{tmp_path / 'p.db'}")
    query = page_query(owner=owner, cursor=cursor, limit=21, order=order)  # type: ignore[arg-type]
    sql = str(query.compile(dialect=sqlite.dialect(), compile_kwargs={"literal_binds": True}))
    try:
        async with store.engine.connect() as conn:
            plan = " | ".join(
                r[3] for r in await conn.execute(sa.text(f"EXPLAIN QUERY PLAN {sql}"))
            )
    finally:
        await store.close()
    assert "TEMP B-TREE" not in plan  # no sort step
    if owner is None:
        assert "SEARCH tasks USING INTEGER PRIMARY KEY" in plan or (
            cursor is None and plan == "SCAN tasks"  # rowid order: stops after LIMIT rows
        ), plan
    else:
        assert "USING INDEX ix_tasks_owner_seq" in plan, plan


async def test_sqlite_writers_of_one_store_never_meet_the_busy_handler(tmp_path: Path) -> None:
    """With the busy handler off, concurrent writers that reached SQLite together would fail
    with "database is locked"; the store's write lock queues them in the event loop instead."""
    store = await open_store(f"sqlite:///{tmp_path / 'c.db'}")

    @sa.event.listens_for(store.engine.sync_engine, "connect")
    def _no_busy_wait(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute("PRAGMA busy_timeout=0")

    await store.engine.dispose()  # the pool's connections now come with busy_timeout=0
    try:
        created = await asyncio.gather(*(store.create_task(make_task(f"t{i}")) for i in range(16)))
        saves = [
            store.save_task(task, [("step", {"step": n})]) for task in created for n in range(3)
        ]
        await asyncio.gather(*saves, *(store.record_usage(t.id, None, 1, 1, 0) for t in created))
        assert [len(await store.list_events(t.id)) for t in created] == [4] * 16
    finally:
        await store.close()
