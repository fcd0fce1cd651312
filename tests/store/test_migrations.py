"""The shipped Alembic migrations build exactly the schema in store/tables.py."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

from tests.conftest import subprocess_env
from tests.fixtures.store import empty_postgres_schema
from wanserve.store.database import Database, connect
from wanserve.store.migrations import alembic_config, upgrade
from wanserve.store.tables import metadata

pytestmark = pytest.mark.integration


def _diff(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, metadata))


def _revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def _downgrade(connection: Connection) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.downgrade(config, "base")


async def _check_round_trip(database: Database) -> None:
    await upgrade(database)
    assert await database.read(_diff) == []
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert await database.read(_revision) == head
    await upgrade(database)  # idempotent
    await database.write(_downgrade)
    names = await database.read(lambda c: sa.inspect(c).get_table_names())
    assert set(names) <= {"alembic_version"}
    await upgrade(database)
    assert await database.read(_diff) == []


@asynccontextmanager
async def _database(url: str, **options: Any) -> AsyncIterator[Database]:
    database = connect(url, **options)
    try:
        yield database
    finally:
        await database.dispose()


async def test_sqlite_upgrade_head_matches_the_models(tmp_path: Path) -> None:
    async with _database(f"sqlite:///{tmp_path / 'm.db'}") as database:
        await _check_round_trip(database)


async def test_postgres_upgrade_head_matches_the_models(
    postgres_schema: tuple[str, str] | None,
) -> None:
    if postgres_schema is None:
        pytest.skip("WANSERVE_TEST_POSTGRES_URL is not set")
    url = postgres_schema[0]
    async with empty_postgres_schema(url) as options, _database(url, **options) as database:
        await _check_round_trip(database)


_OPEN_STORE = """
import asyncio, json, sys
from wanserve.store import open_store

async def main(url, options):
    store = await open_store(url, **options)
    await store.close()

asyncio.run(main(sys.argv[1], json.loads(sys.argv[2])))
"""


async def _start_together(url: str, options: dict[str, Any], count: int = 3) -> list[int]:
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", _OPEN_STORE, url, json.dumps(options), env=subprocess_env()
        )
        for _ in range(count)
    ]
    return [await asyncio.wait_for(p.wait(), timeout=120) for p in procs]


async def test_processes_starting_together_migrate_once_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'together.db'}"
    assert await _start_together(url, {}) == [0, 0, 0]
    async with _database(url) as database:
        assert await database.read(_diff) == []


async def test_processes_starting_together_migrate_once_postgres(
    postgres_schema: tuple[str, str] | None,
) -> None:
    if postgres_schema is None:
        pytest.skip("WANSERVE_TEST_POSTGRES_URL is not set")
    url = postgres_schema[0]
    async with empty_postgres_schema(url) as options:
        assert await _start_together(url, options) == [0, 0, 0]
        async with _database(url, **options) as database:
            assert await database.read(_diff) == []
