"""`wanserve keys`: create, list and revoke API keys in the configured store.

A key's secret is printed once, by `create`; the store keeps only its sha256.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from wanserve.cli.app import app

if TYPE_CHECKING:
    from wanserve.api.keys import CreatedKey
    from wanserve.store.base import ApiKey, TaskStore

__all__ = ["keys_app"]

keys_app = typer.Typer(help="Manage API keys (stored hashed; a secret is shown once).")
app.add_typer(keys_app, name="keys")

_T = TypeVar("_T")


def _with_store(work: Callable[[TaskStore], Awaitable[_T]]) -> _T:
    """Run `work(store)` against the store the settings name, closing it afterwards."""

    async def run() -> _T:
        from wanserve.settings import get_settings
        from wanserve.store import make_store

        store = await make_store(get_settings())
        try:
            return await work(store)
        finally:
            await store.close()

    return asyncio.run(run())


@keys_app.command("create")
def create_key(
    name: Annotated[str, typer.Option(help="Who or what the key is for.")],
    admin: Annotated[bool, typer.Option(help="The key sees every owner's videos.")] = False,
) -> None:
    """Create a key and print its secret (once)."""
    from wanserve.api.keys import create_api_key

    async def work(store: TaskStore) -> CreatedKey:
        return await create_api_key(store, name, is_admin=admin, now=time.time)

    from wanserve.domain.errors import InvalidRequest

    try:
        created = _with_store(work)
    except InvalidRequest as exc:
        typer.echo(f"error: {exc.detail}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"created {'admin ' if admin else ''}key {created.key.id} ({name})")
    typer.echo("secret (shown once; send it as `Authorization: Bearer <secret>`):")
    typer.echo(created.secret)


@keys_app.command("list")
def list_keys() -> None:
    """List keys: id, name, role, created and revoked times (never secrets)."""

    async def work(store: TaskStore) -> list[ApiKey]:
        return await store.list_api_keys()

    for key in _with_store(work):
        revoked = f"  revoked {_when(key.revoked_at)}" if key.revoked_at else ""
        role = "admin" if key.is_admin else "user"
        typer.echo(f"{key.id}  {key.name}  {role}  created {_when(key.created_at)}{revoked}")


@keys_app.command("revoke")
def revoke_key(key_id: Annotated[str, typer.Argument(help="The key id (key_...).")]) -> None:
    """Revoke a key: requests with it are refused from now on."""

    async def work(store: TaskStore) -> bool:
        return await store.revoke_api_key(key_id, time.time())

    if not _with_store(work):
        typer.echo(f"key_id={key_id!r} is invalid: must be an active key's id", err=True)
        raise typer.Exit(1)
    typer.echo(f"revoked {key_id}")


def _when(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
