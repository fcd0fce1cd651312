"""Alembic environment: migrations run on a connection the store hands over, or, when alembic is
run by hand, on the URL in WANSERVE_STORE__URL (or `sqlalchemy.url` in the config).
"""

from __future__ import annotations

import asyncio
import os

from alembic import context
from sqlalchemy.engine import Connection

from wanserve.store.database import connect
from wanserve.store.tables import metadata

config = context.config


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite ALTER needs table copies
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_on_url(url: str) -> None:
    database = connect(url)
    try:
        await database.write(_run)
    finally:
        await database.dispose()


connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    url = os.environ.get("WANSERVE_STORE__URL") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("set WANSERVE_STORE__URL (or sqlalchemy.url) to the database to migrate")
    asyncio.run(_run_on_url(url))
