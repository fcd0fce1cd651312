"""SqlStore: the TaskStore on SQLAlchemy 2 (async): SQLite (WAL) embedded, Postgres by URL.

Each method is one transaction. Event ids are per-task sequence numbers taken from the task row's
`last_event_id` in the same UPDATE that saves the task, so concurrent writers of one task are
serialised by the row (Postgres) or the database write lock (SQLite) and never reuse an id.

On SQLite, write transactions of one SqlStore also queue on an `asyncio.Lock`: SQLite has a single
writer, and pool connections that meet it wait in its busy handler, which sleeps in steps of up
to 100 ms; queueing in the event loop hands the lock over as soon as the writer commits.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.exc import InterfaceError as SaInterfaceError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from wanserve.domain.errors import BackendUnavailable, Conflict, InvalidRequest, NotFound
from wanserve.domain.task import Task, TaskEvent, TaskState
from wanserve.store.base import ApiKey, TaskPage, over_stored
from wanserve.store.migrations import upgrade
from wanserve.store.tables import api_keys, task_events, tasks, usage

__all__ = ["SqlStore", "page_query"]


@asynccontextmanager
async def unreachable_as_unavailable() -> AsyncIterator[None]:
    """A database that cannot be reached raises BackendUnavailable (503), not a driver error."""
    try:
        yield
    except (OperationalError, SaInterfaceError, OSError) as exc:
        raise BackendUnavailable(f"store unreachable: {exc}") from exc


def _scope(owner: str | None, key: str) -> str:
    return f"{owner or ''}:{key}"


def _task_row(task: Task) -> dict[str, Any]:
    return {
        "id": task.id,
        "owner": task.owner,
        "state": task.state.value,
        "priority": task.priority,
        "created_at": task.created_at,
        "expires_at": task.expires_at,
        "idempotency_scope": (
            _scope(task.owner, task.idempotency_key) if task.idempotency_key else None
        ),
        "data": task.model_dump(mode="json"),
    }


def _key(row: sa.Row[Any]) -> ApiKey:
    return ApiKey(**{**row._mapping, "is_admin": bool(row.is_admin)})


def _owned(owner: str | None, task_id: str) -> sa.ColumnElement[bool]:
    if owner is None:
        return tasks.c.id == task_id
    return sa.and_(tasks.c.id == task_id, tasks.c.owner == owner)


def page_query(
    *, owner: str | None, cursor: int | None, limit: int, order: Literal["asc", "desc"]
) -> sa.Select[tuple[Any]]:
    """Task JSON after creation-order position `cursor`: an index range scan on (owner, seq)
    or on the primary key, whatever the table size (tests/store/test_sql.py checks the plan).
    """
    where = [] if owner is None else [tasks.c.owner == owner]
    if cursor is not None:
        where.append(tasks.c.seq > cursor if order == "asc" else tasks.c.seq < cursor)
    by = tasks.c.seq.asc() if order == "asc" else tasks.c.seq.desc()
    return sa.select(tasks.c.data).where(*where).order_by(by).limit(limit)


class SqlStore:
    """TaskStore on an AsyncEngine. Build it with `open_store(url)`, which also migrates."""

    def __init__(self, engine: AsyncEngine, *, clock: Callable[[], float] = time.time) -> None:
        self.engine = engine
        self._clock = clock
        # SQLite: one writer per database; Postgres locks rows, so its writers run in parallel
        self._write_lock = asyncio.Lock() if engine.dialect.name == "sqlite" else None

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncConnection]:
        """One write transaction (queued behind this store's other writers on SQLite)."""
        async with contextlib.AsyncExitStack() as stack:
            if self._write_lock is not None:
                await stack.enter_async_context(self._write_lock)
            yield await stack.enter_async_context(self.engine.begin())

    async def migrate(self) -> None:
        """Apply the shipped Alembic migrations up to head (no-op when current)."""
        async with unreachable_as_unavailable():
            await upgrade(self.engine)

    async def create_task(self, task: Task) -> Task:
        row = _task_row(task) | {"last_event_id": 1}
        try:
            async with self._write() as conn:
                await conn.execute(tasks.insert().values(row))
                await self._insert_events(conn, task.id, 1, [("created", {"state": row["state"]})])
        except IntegrityError as exc:
            raise await self._create_conflict(task) from exc
        return task

    async def get_task(self, task_id: str) -> Task | None:
        return await self._one_task(tasks.c.id == task_id)

    async def find_by_idempotency_key(self, owner: str | None, key: str) -> Task | None:
        return await self._one_task(tasks.c.idempotency_scope == _scope(owner, key))

    async def save_task(
        self, task: Task, events: Sequence[tuple[str, dict[str, Any]]] = ()
    ) -> list[TaskEvent]:
        # The first UPDATE takes the row (Postgres) or the write lock (SQLite) and returns what
        # the rule of `over_stored` needs, so no writer can slip in before the second one.
        claim = (
            tasks.update()
            .where(tasks.c.id == task.id)
            .values(last_event_id=tasks.c.last_event_id + len(events))
            .returning(
                tasks.c.last_event_id, tasks.c.state, tasks.c.data["cancel_requested"].as_boolean()
            )
        )
        async with self._write() as conn:
            row = (await conn.execute(claim)).first()
            if row is None:
                raise NotFound(f"task {task.id} does not exist", task_id=task.id)
            last, state, cancel_requested = row
            task = over_stored(task, TaskState(state), bool(cancel_requested))
            await conn.execute(tasks.update().where(tasks.c.id == task.id).values(_task_row(task)))
            return await self._insert_events(conn, task.id, last - len(events) + 1, events)

    async def list_tasks(
        self,
        *,
        owner: str | None,
        after: str | None = None,
        limit: int = 20,
        order: Literal["asc", "desc"] = "desc",
    ) -> TaskPage:
        async with self.engine.connect() as conn:
            cursor = None
            if after is not None:
                cursor = await conn.scalar(sa.select(tasks.c.seq).where(_owned(owner, after)))
                if cursor is None:
                    raise InvalidRequest("after", after, "must be the id of a task in this list")
            query = page_query(owner=owner, cursor=cursor, limit=limit + 1, order=order)
            found = [Task.model_validate(d) for d in await conn.scalars(query)]
        return TaskPage(tasks=found[:limit], has_more=len(found) > limit)

    async def tasks_in_states(self, states: Sequence[TaskState], limit: int = 1000) -> list[Task]:
        wanted = [TaskState(s).value for s in states]
        return await self._tasks(tasks.c.state.in_(wanted), order=tasks.c.seq, limit=limit)

    async def delete_task(self, task_id: str) -> bool:
        async with self._write() as conn:
            await conn.execute(task_events.delete().where(task_events.c.task_id == task_id))
            result = await conn.execute(tasks.delete().where(tasks.c.id == task_id))
        return result.rowcount > 0

    async def list_events(self, task_id: str, *, after_id: int = 0) -> list[TaskEvent]:
        query = (
            sa.select(task_events)
            .where(task_events.c.task_id == task_id, task_events.c.id > after_id)
            .order_by(task_events.c.id)
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [
            TaskEvent(id=r.id, task_id=r.task_id, type=r.type, data=r.data, at=r.at) for r in rows
        ]

    async def expired_tasks(self, now: float, limit: int = 100) -> list[Task]:
        where = sa.and_(tasks.c.state == TaskState.COMPLETED.value, tasks.c.expires_at <= now)
        return await self._tasks(where, order=tasks.c.expires_at, limit=limit)

    async def create_api_key(self, key: ApiKey) -> None:
        try:
            async with self._write() as conn:
                await conn.execute(api_keys.insert().values(asdict(key)))
        except IntegrityError as exc:
            raise Conflict(f"api key {key.id} already exists", key_id=key.id) from exc

    async def get_api_key_by_hash(self, key_hash: str) -> ApiKey | None:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(api_keys.select().where(api_keys.c.key_hash == key_hash))
            ).first()
        return None if row is None else _key(row)

    async def list_api_keys(self) -> list[ApiKey]:
        query = api_keys.select().order_by(api_keys.c.created_at, api_keys.c.id)
        async with self.engine.connect() as conn:
            return [_key(r) for r in (await conn.execute(query)).all()]

    async def revoke_api_key(self, key_id: str, now: float) -> bool:
        stmt = (
            api_keys.update()
            .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        async with self._write() as conn:
            return (await conn.execute(stmt)).rowcount > 0

    async def record_usage(
        self, task_id: str, owner: str | None, gpu_seconds: float, wall_seconds: float, at: float
    ) -> None:
        row = {"task_id": task_id, "owner": owner, "gpu_seconds": gpu_seconds}
        async with self._write() as conn:
            await conn.execute(
                usage.insert().values(row | {"wall_seconds": wall_seconds, "at": at})
            )

    async def usage_by_owner(self, owner: str | None) -> dict[str, float]:
        query = sa.select(
            sa.func.count(sa.distinct(usage.c.task_id)),
            sa.func.coalesce(sa.func.sum(usage.c.gpu_seconds), 0.0),
            sa.func.coalesce(sa.func.sum(usage.c.wall_seconds), 0.0),
        )
        if owner is not None:
            query = query.where(usage.c.owner == owner)
        async with self.engine.connect() as conn:
            count, gpu, wall = (await conn.execute(query)).one()
        return {"tasks": float(count), "gpu_seconds": float(gpu), "wall_seconds": float(wall)}

    async def ping(self) -> None:
        async with unreachable_as_unavailable(), self.engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))

    async def close(self) -> None:
        await self.engine.dispose()

    async def _insert_events(
        self,
        conn: AsyncConnection,
        task_id: str,
        first_id: int,
        events: Sequence[tuple[str, dict[str, Any]]],
    ) -> list[TaskEvent]:
        at = self._clock()
        made = [
            TaskEvent(id=first_id + i, task_id=task_id, type=kind, data=data, at=at)
            for i, (kind, data) in enumerate(events)
        ]
        if made:
            await conn.execute(task_events.insert(), [e.model_dump() for e in made])
        return made

    async def _one_task(self, where: sa.ColumnElement[bool]) -> Task | None:
        found = await self._tasks(where, order=tasks.c.seq, limit=1)
        return found[0] if found else None

    async def _tasks(
        self, where: sa.ColumnElement[bool], *, order: sa.ColumnElement[Any], limit: int
    ) -> list[Task]:
        query = sa.select(tasks.c.data).where(where).order_by(order).limit(limit)
        async with self.engine.connect() as conn:
            return [Task.model_validate(d) for d in await conn.scalars(query)]

    async def _create_conflict(self, task: Task) -> Conflict:
        if task.idempotency_key is not None:
            found = await self.find_by_idempotency_key(task.owner, task.idempotency_key)
            if found is not None and found.id != task.id:
                return Conflict(
                    f"idempotency_key={task.idempotency_key!r} is already used by task {found.id}",
                    task_id=found.id,
                )
        return Conflict(f"task {task.id} already exists", task_id=task.id)
