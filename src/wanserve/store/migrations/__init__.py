"""Alembic migrations of the store, shipped inside the package and applied at start-up."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = ["alembic_config", "upgrade"]

_STORE = Path(__file__).resolve().parent.parent


def alembic_config() -> Config:
    """The shipped alembic.ini, with script_location resolved inside the installed package."""
    config = Config(str(_STORE / "alembic.ini"))
    config.set_main_option("script_location", str(_STORE / "migrations"))
    return config


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    """Bring the database behind `engine` to `revision` (idempotent: no-op when already there)."""
    async with engine.begin() as connection:
        await connection.run_sync(_upgrade, revision)


def _upgrade(connection: Connection, revision: str) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, revision)
