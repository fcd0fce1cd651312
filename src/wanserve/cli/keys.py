"""`wanserve keys`: create, list, update (limits) and revoke API keys in the configured store.

A key's secret is printed once, by `create`; the store keeps only its sha256. The limits (quotas
and fair-share weight, domain/quotas.py) are the same as over `/v1/admin/keys`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from wanserve.cli.app import app

if TYPE_CHECKING:
    from wanserve.api.key_admin import KeyAdmin
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


def _with_admin(work: Callable[[KeyAdmin], Awaitable[_T]]) -> _T:
    """Run `work(admin)` on the configured store; a refused value exits 2, an unknown key 1."""
    from wanserve.api.key_admin import KeyAdmin
    from wanserve.domain.errors import InvalidRequest, NotFound

    try:
        return _with_store(lambda store: work(KeyAdmin(store, time.time)))
    except InvalidRequest as exc:
        typer.echo(f"error: {exc.detail}", err=True)
        raise typer.Exit(2) from None
    except NotFound as exc:
        typer.echo(f"error: {exc.detail}", err=True)
        raise typer.Exit(1) from None


_MaxConcurrent = Annotated[
    int | None, typer.Option(help="Tasks queued or running at once (default: no limit).")
]
_PerHour = Annotated[int | None, typer.Option(help="Tasks created in any hour.")]
_GpuSeconds = Annotated[
    float | None, typer.Option(help="GPU-seconds per UTC day, of settled attempts.")
]
_MaxPriority = Annotated[int | None, typer.Option(help="The highest priority it may ask for.")]
_LIMIT_NAMES = ("max_concurrent", "per_hour", "gpu_seconds_per_day", "max_priority")


@keys_app.command("create")
def create_key(
    name: Annotated[str, typer.Option(help="Who or what the key is for.")],
    admin: Annotated[bool, typer.Option(help="The key sees every owner's videos.")] = False,
    max_concurrent: _MaxConcurrent = None,
    per_hour: _PerHour = None,
    gpu_seconds_per_day: _GpuSeconds = None,
    max_priority: _MaxPriority = None,
    weight: Annotated[
        float, typer.Option(help="Its share of a priority against other keys (fair share).")
    ] = 1.0,
) -> None:
    """Create a key with these limits and print its secret (once)."""
    from wanserve.domain.quotas import KeyLimits

    limits = KeyLimits(max_concurrent, per_hour, gpu_seconds_per_day, max_priority, weight)

    async def work(keys: KeyAdmin) -> CreatedKey:
        return await keys.create(name, is_admin=admin, limits=limits)

    created = _with_admin(work)
    typer.echo(f"created {'admin ' if admin else ''}key {created.key.id} ({name})")
    typer.echo("secret (shown once; send it as `Authorization: Bearer <secret>`):")
    typer.echo(created.secret)


@keys_app.command("update")
def update_key(
    key_id: Annotated[str, typer.Argument(help="The key id (key_...).")],
    max_concurrent: _MaxConcurrent = None,
    per_hour: _PerHour = None,
    gpu_seconds_per_day: _GpuSeconds = None,
    max_priority: _MaxPriority = None,
    weight: Annotated[float | None, typer.Option(help="Its fair-share weight.")] = None,
    lift: Annotated[
        list[str] | None,
        typer.Option(help=f"Remove this limit (repeatable): one of {', '.join(_LIMIT_NAMES)}."),
    ] = None,
) -> None:
    """Change an active key's limits: the options given; the others stay as they are."""
    given = {
        "max_concurrent": max_concurrent,
        "per_hour": per_hour,
        "gpu_seconds_per_day": gpu_seconds_per_day,
        "max_priority": max_priority,
        "weight": weight,
    }
    changes: dict[str, Any] = {name: value for name, value in given.items() if value is not None}
    for name in lift or ():
        if name not in _LIMIT_NAMES:
            typer.echo(
                f"error: --lift {name!r} is invalid: must be one of {_LIMIT_NAMES}", err=True
            )
            raise typer.Exit(2)
        changes[name] = None

    async def work(keys: KeyAdmin) -> ApiKey:
        return await keys.update(key_id, changes)

    key = _with_admin(work)
    typer.echo(f"updated {key.id}: {_limits(key)}")


@keys_app.command("list")
def list_keys() -> None:
    """List keys: id, name, role, limits, created and revoked times (never secrets)."""

    async def work(store: TaskStore) -> list[ApiKey]:
        return await store.list_api_keys()

    for key in _with_store(work):
        revoked = f"  revoked {_when(key.revoked_at)}" if key.revoked_at else ""
        role = "admin" if key.is_admin else "user"
        created = f"created {_when(key.created_at)}"
        typer.echo(f"{key.id}  {key.name}  {role}  {_limits(key)}  {created}{revoked}")


def _limits(key: ApiKey) -> str:
    """`max_concurrent=2 per_hour=- ... weight=1`: a dash is no limit."""
    limits = key.limits
    values = [(name, getattr(limits, name)) for name in _LIMIT_NAMES]
    shown = " ".join(f"{n}={'-' if v is None else f'{v:g}'}" for n, v in values)
    return f"{shown} weight={limits.weight:g}"


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
