"""SqlStore behaviour beyond the contract: SQLite tuning, durability, query plans, factories."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Connection

from tests.fakes.clock import FakeClock
from tests.fixtures.store import logged, make_task, open_sql_store, postgres_options
from wanserve.domain.errors import BackendUnavailable
from wanserve.domain.journal import MemoryEntry
from wanserve.domain.transitions import create
from wanserve.settings import Settings, StoreSettings
from wanserve.store import make_store, open_store, pool_options
from wanserve.store.base import Usage
from wanserve.store.database import ThreadedSqlite, connect
from wanserve.store.sql import SqlStore, _task_row, page_query
from wanserve.store.tables import tasks

pytestmark = pytest.mark.integration


async def test_sqlite_runs_in_wal_with_foreign_keys(tmp_path: Path) -> None:
    store = await open_store(f"sqlite:///{tmp_path / 'w.db'}")

    def pragmas(conn: Connection) -> list[Any]:
        names = ("journal_mode", "foreign_keys", "busy_timeout")
        return [conn.scalar(sa.text(f"PRAGMA {name}")) for name in names]

    try:
        for run in (store.database.read, store.database.write):
            journal, foreign_keys, busy_timeout = await run(pragmas)
            assert (journal, foreign_keys) == ("wal", 1)
            assert busy_timeout > 0
    finally:
        await store.close()


async def test_tasks_survive_a_reopen(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'r.db'}"
    store = await open_store(url)
    task = await store.create_task(create(make_task("kept")))
    await store.save_task(logged(task, MemoryEntry(device="cpu", peak_bytes=1)))
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
        assert store.database.dialect_name == "sqlite"
        await store.create_task(create(make_task("t1")))
    finally:
        await store.close()
    assert (tmp_path / "data" / "wanserve.db").is_file()


async def test_unreachable_database_is_backend_unavailable() -> None:
    store = SqlStore(connect("postgresql://postgres@127.0.0.1:9/none"))
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
        rows = await store.database.read(
            lambda conn: conn.execute(sa.text(f"EXPLAIN QUERY PLAN {sql}")).all()
        )
        plan = " | ".join(r[3] for r in rows)
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
    with "database is locked"; the store's one writer thread takes them in turn instead, while
    reads run beside them."""
    store = await open_store(f"sqlite:///{tmp_path / 'c.db'}")
    assert isinstance(store.database, ThreadedSqlite)
    engine = store.database.engine

    @sa.event.listens_for(engine, "connect")
    def _no_busy_wait(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute("PRAGMA busy_timeout=0")

    engine.dispose()  # the pool's connections now come with busy_timeout=0
    try:
        created = await asyncio.gather(
            *(store.create_task(create(make_task(f"t{i}"))) for i in range(16))
        )
        saves = [
            store.save_task(logged(task, MemoryEntry(device="cpu", peak_bytes=n)), Usage(1.0, 1.0))
            for task in created
            for n in range(3)
        ]
        reads = (store.list_events(t.id) for t in created)
        await asyncio.gather(*saves, *reads)
        assert [len(await store.list_events(t.id)) for t in created] == [4] * 16
        assert (await store.usage_by_owner(None))["gpu_seconds"] == 48.0
    finally:
        await store.close()


async def test_an_aiosqlite_url_names_the_same_database(tmp_path: Path) -> None:
    """Settings written for the earlier aiosqlite store keep working, on the same file."""
    store = await open_store(f"sqlite:///{tmp_path / 'a.db'}")
    await store.create_task(create(make_task("kept")))
    await store.close()
    store = await open_store(f"sqlite+aiosqlite:///{tmp_path / 'a.db'}")
    try:
        assert isinstance(store.database, ThreadedSqlite)
        assert (await store.get_task("kept")) is not None
    finally:
        await store.close()


async def test_a_failed_write_leaves_nothing_behind(tmp_path: Path) -> None:
    """A write function that raises half-way rolls back what it had written."""
    store = await open_store(f"sqlite:///{tmp_path / 'f.db'}")
    task = make_task("t")

    def half_then_fail(conn: Connection) -> None:
        conn.execute(tasks.insert(), _task_row(task) | {"last_event_id": 0})
        raise RuntimeError("half-way")

    try:
        with pytest.raises(RuntimeError, match="half-way"):
            await store.database.write(half_then_fail)
        assert await store.get_task("t") is None
        await store.create_task(create(task))  # the writer thread and its connection still work
        assert await store.get_task("t") == task
    finally:
        await store.close()


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
async def test_execute_commits_one_statement(
    kind: str, tmp_path: Path, postgres_schema: tuple[str, str] | None, fake_clock: FakeClock
) -> None:
    if kind == "postgres" and postgres_schema is None:
        pytest.skip("WANSERVE_TEST_POSTGRES_URL is not set")
    async with open_sql_store(kind, tmp_path, postgres_schema, fake_clock) as store:
        await store.create_task(create(make_task("t1")))
        raise_priority = tasks.update().where(tasks.c.id == sa.bindparam("task_id"))
        await store.database.execute(raise_priority.values(priority=9), {"task_id": "t1"})
        read = sa.select(tasks.c.priority).where(tasks.c.id == "t1")
        assert await store.database.read(lambda conn: conn.scalar(read)) == 9


def test_pool_options_size_a_server_databases_pool() -> None:
    settings = StoreSettings(pool_size=7, pool_overflow=3)
    assert pool_options(settings, "postgresql+asyncpg://db/x") == {
        "pool_size": 7,
        "max_overflow": 3,
    }
    assert pool_options(settings, "sqlite:///x.db") == {}  # its own two threads


async def test_postgres_pool_keeps_the_configured_connections(
    postgres_schema: tuple[str, str] | None,
) -> None:
    """Connections up to pool_size stay open between requests (past it they were reopened per
    request: a new server process each time)."""
    if postgres_schema is None:
        pytest.skip("WANSERVE_TEST_POSTGRES_URL is not set")
    url, schema = postgres_schema
    options = pool_options(StoreSettings(pool_size=8, pool_overflow=2), url)
    store = await open_store(url, **postgres_options(schema), **options)
    try:
        await asyncio.gather(*(store.get_task(f"t{i}") for i in range(8)))
        pool = store.database.engine.pool  # type: ignore[attr-defined]
        assert (pool.size(), pool.checkedin()) == (8, 8)
    finally:
        await store.close()
