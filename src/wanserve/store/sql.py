"""SqlStore: the TaskStore on SQLAlchemy 2: SQLite (WAL) embedded, Postgres by URL.

Each method is one sync function of a `Connection`, run by the store's `Database` as one
transaction (store/database.py: on SQLite's writer thread, or in asyncpg's greenlet). Event ids
are per-task sequence numbers taken from the task row's `last_event_id` in the same UPDATE that
saves the task, so concurrent writers of one task are serialised by the row (Postgres) or the
database write lock (SQLite) and never reuse an id.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict, fields
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as postgres_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.exc import InterfaceError as SaInterfaceError

from wanserve.domain.deliveries import (
    DeliveryAttempt,
    DeliveryState,
    WebhookDelivery,
    WebhookMessage,
)
from wanserve.domain.durations import WINDOW, Sample
from wanserve.domain.errors import BackendUnavailable, Conflict, InvalidRequest, NotFound
from wanserve.domain.journal import Change, JournalEntry
from wanserve.domain.quotas import KeyLimits
from wanserve.domain.task import Task, TaskEvent, TaskState
from wanserve.domain.transitions import over_stored
from wanserve.domain.types import Clock
from wanserve.store import outbox
from wanserve.store.base import ApiKey, TaskPage, Usage
from wanserve.store.database import Database
from wanserve.store.migrations import upgrade
from wanserve.store.tables import api_keys, task_events, tasks
from wanserve.store.tables import durations as duration_rows
from wanserve.store.tables import usage as usage_rows

__all__ = ["SqlStore", "page_query"]


@asynccontextmanager
async def unreachable_as_unavailable() -> AsyncIterator[None]:
    """A database that cannot be reached raises BackendUnavailable (503), not a driver error."""
    try:
        yield
    except (OperationalError, SaInterfaceError, OSError) as exc:
        raise BackendUnavailable(f"store unreachable: {exc}") from exc


# The hot statements, built once and executed with parameters: that skips building a statement
# and its cache key on each call, about a third of a create's CPU on SQLite.
_CLAIM = (
    tasks.update()
    .where(tasks.c.id == sa.bindparam("claim_id"))
    .values(last_event_id=tasks.c.last_event_id + sa.bindparam("claim_count"))
    .returning(
        tasks.c.last_event_id,
        tasks.c.state,
        tasks.c.data["attempt"].as_integer(),
        tasks.c.data["cancel_requested"].as_boolean(),
    )
)
_SAVE = tasks.update().where(tasks.c.id == sa.bindparam("save_id"))  # SET: the row's columns
_INSERT_TASK = tasks.insert()
_INSERT_EVENTS = task_events.insert()
_INSERT_USAGE = usage_rows.insert()
_EVENTS_AFTER = (
    sa.select(task_events)
    .where(
        task_events.c.task_id == sa.bindparam("task_id"), task_events.c.id > sa.bindparam("after")
    )
    .order_by(task_events.c.id)
)
# Postgres creates a task and its "created" event in one statement, in autocommit: one round trip
# instead of four (BEGIN, two INSERTs, COMMIT). SQLite has no INSERT in a WITH; its grouped writer
# commits many creates at once instead (store/writer.py).
_NEW_TASK = (
    tasks.insert()
    .values(
        {c.name: sa.bindparam(f"task_{c.name}", type_=c.type) for c in tasks.c if c.name != "seq"}
    )
    .returning(tasks.c.id)
    .cte("new_task")
)
_INSERT_TASK_AND_EVENT = task_events.insert().from_select(
    ["task_id", "id", "type", "data", "at"],
    sa.select(
        _NEW_TASK.c.id,
        sa.literal(1),
        sa.literal("created"),
        sa.bindparam("event_data", type_=task_events.c.data.type),
        sa.bindparam("event_at", type_=task_events.c.at.type),
    ),
)
_TASK_BY_ID = sa.select(tasks.c.data).where(tasks.c.id == sa.bindparam("task_id"))
_TASK_BY_SCOPE = sa.select(tasks.c.data).where(tasks.c.idempotency_scope == sa.bindparam("scope"))


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


_LIMITS = [field.name for field in fields(KeyLimits)]


def _key(row: sa.Row[Any]) -> ApiKey:
    columns = dict(row._mapping)
    limits = KeyLimits(**{name: columns.pop(name) for name in _LIMITS})
    return ApiKey(**{**columns, "is_admin": bool(row.is_admin), "limits": limits})


def _key_row(key: ApiKey) -> dict[str, Any]:
    row = {field.name: getattr(key, field.name) for field in fields(ApiKey)}
    return {**row, **asdict(row.pop("limits"))}


def _owned(owner: str | None, task_id: str) -> sa.ColumnElement[bool]:
    if owner is None:
        return tasks.c.id == task_id
    return sa.and_(tasks.c.id == task_id, tasks.c.owner == owner)


def page_query(
    *,
    owner: str | None,
    cursor: int | None,
    limit: int,
    order: Literal["asc", "desc"],
    states: Sequence[TaskState] | None = None,
) -> sa.Select[tuple[Any]]:
    """Task JSON after creation-order position `cursor`: an index range scan on (owner, seq)
    or on the primary key, whatever the table size (tests/store/test_sql.py checks the plan).
    """
    where = [] if owner is None else [tasks.c.owner == owner]
    if cursor is not None:
        where.append(tasks.c.seq > cursor if order == "asc" else tasks.c.seq < cursor)
    if states is not None:
        where.append(tasks.c.state.in_([TaskState(s).value for s in states]))
    by = tasks.c.seq.asc() if order == "asc" else tasks.c.seq.desc()
    return sa.select(tasks.c.data).where(*where).order_by(by).limit(limit)


class SqlStore:
    """TaskStore on a `Database`. Build it with `open_store(url)`, which also migrates."""

    def __init__(self, database: Database, *, clock: Clock = time.time) -> None:
        self.database = database
        self._clock = clock

    async def migrate(self) -> None:
        """Apply the shipped Alembic migrations up to head (no-op when current)."""
        async with unreachable_as_unavailable():
            await upgrade(self.database)

    async def create_task(self, change: Change) -> Task:
        task, (entry,) = change.task, change.entries  # transitions.create: one "created" entry
        row = _task_row(task) | {"last_event_id": 1}
        created = entry.data()
        at = self._clock()
        event = {"task_id": task.id, "id": 1, "type": entry.type, "data": created, "at": at}

        def insert(conn: Connection) -> None:
            conn.execute(_INSERT_TASK, row)
            conn.execute(_INSERT_EVENTS, event)

        try:
            if self.database.dialect_name == "postgresql":
                params = {f"task_{name}": value for name, value in row.items()}
                params |= {"event_data": created, "event_at": at}
                await self.database.execute(_INSERT_TASK_AND_EVENT, params)
            else:
                await self.database.write(insert)
        except IntegrityError as exc:
            raise await self._create_conflict(task) from exc
        return task

    async def get_task(self, task_id: str) -> Task | None:
        return await self._one_task(_TASK_BY_ID, {"task_id": task_id})

    async def get_tasks(self, task_ids: Sequence[str]) -> list[Task]:
        if not task_ids:
            return []
        query = sa.select(tasks.c.data).where(tasks.c.id.in_(list(task_ids)))
        found = await self.database.read(
            lambda conn: [Task.model_validate(d) for d in conn.scalars(query)]
        )
        by_id = {task.id: task for task in found}
        return [by_id[task_id] for task_id in task_ids if task_id in by_id]

    async def find_by_idempotency_key(self, owner: str | None, key: str) -> Task | None:
        return await self._one_task(_TASK_BY_SCOPE, {"scope": _scope(owner, key)})

    async def save_task(
        self,
        change: Change,
        usage: Usage | None = None,
        webhooks: Sequence[WebhookMessage] = (),
    ) -> list[TaskEvent]:
        task, entries = change.task, change.entries

        # The first UPDATE takes the row (Postgres) or the write lock (SQLite) and returns what
        # the rule of `over_stored` needs, so no writer can slip in before the second one.
        def save(conn: Connection) -> list[TaskEvent]:
            claim = {"claim_id": task.id, "claim_count": len(entries)}
            row = conn.execute(_CLAIM, claim).first()
            if row is None:
                raise NotFound(f"task {task.id} does not exist", task_id=task.id)
            last, state, attempt, cancel_requested = row
            saved = over_stored(change, TaskState(state), int(attempt), bool(cancel_requested))
            conn.execute(_SAVE, _task_row(saved) | {"save_id": task.id})
            if usage is not None:
                used = {"task_id": task.id, "owner": task.owner, "at": self._clock()}
                conn.execute(_INSERT_USAGE, used | asdict(usage))
            outbox.insert_messages(conn, webhooks)
            return self._insert_events(conn, task.id, last - len(entries) + 1, entries)

        return await self.database.write(save)

    async def list_tasks(
        self,
        *,
        owner: str | None,
        after: str | None = None,
        limit: int = 20,
        order: Literal["asc", "desc"] = "desc",
        states: Sequence[TaskState] | None = None,
    ) -> TaskPage:
        def page(conn: Connection) -> TaskPage:
            cursor = None
            if after is not None:
                cursor = conn.scalar(sa.select(tasks.c.seq).where(_owned(owner, after)))
                if cursor is None:
                    raise InvalidRequest("after", after, "must be the id of a task in this list")
            query = page_query(
                owner=owner, cursor=cursor, limit=limit + 1, order=order, states=states
            )
            found = [Task.model_validate(d) for d in conn.scalars(query)]
            return TaskPage(tasks=found[:limit], has_more=len(found) > limit)

        return await self.database.read(page)

    async def tasks_in_states(self, states: Sequence[TaskState], limit: int = 1000) -> list[Task]:
        wanted = [TaskState(s).value for s in states]
        return await self._tasks(tasks.c.state.in_(wanted), order=tasks.c.seq, limit=limit)

    async def delete_task(self, task_id: str) -> bool:
        def delete(conn: Connection) -> bool:
            outbox.delete_for_task(conn, task_id)
            conn.execute(task_events.delete().where(task_events.c.task_id == task_id))
            return conn.execute(tasks.delete().where(tasks.c.id == task_id)).rowcount > 0

        return await self.database.write(delete)

    async def list_events(self, task_id: str, *, after_id: int = 0) -> list[TaskEvent]:
        params = {"task_id": task_id, "after": after_id}

        def events(conn: Connection) -> list[TaskEvent]:
            return [
                TaskEvent(id=r.id, task_id=r.task_id, type=r.type, data=r.data, at=r.at)
                for r in conn.execute(_EVENTS_AFTER, params)
            ]

        return await self.database.read(events)

    async def expired_tasks(self, now: float, limit: int = 100) -> list[Task]:
        where = sa.and_(tasks.c.state == TaskState.COMPLETED.value, tasks.c.expires_at <= now)
        return await self._tasks(where, order=tasks.c.expires_at, limit=limit)

    async def claim_webhooks(
        self, now: float, *, limit: int, lease_s: float
    ) -> list[WebhookDelivery]:
        skip_locked = self.database.dialect_name == "postgresql"
        return await self.database.write(
            lambda conn: outbox.claim(conn, now, limit, lease_s, skip_locked=skip_locked)
        )

    async def record_webhook_attempt(
        self,
        delivery_id: str,
        attempt: DeliveryAttempt,
        state: DeliveryState,
        next_attempt_at: float | None,
    ) -> bool:
        return await self.database.write(
            lambda conn: outbox.record_attempt(conn, delivery_id, attempt, state, next_attempt_at)
        )

    async def webhook_deliveries(self, task_id: str) -> list[WebhookDelivery]:
        return await self.database.read(lambda conn: outbox.deliveries(conn, task_id))

    async def create_api_key(self, key: ApiKey) -> None:
        try:
            await self.database.write(lambda conn: conn.execute(api_keys.insert(), _key_row(key)))
        except IntegrityError as exc:
            raise Conflict(f"api key {key.id} already exists", key_id=key.id) from exc

    async def get_api_key_by_hash(self, key_hash: str) -> ApiKey | None:
        query = api_keys.select().where(api_keys.c.key_hash == key_hash)

        def find(conn: Connection) -> ApiKey | None:
            row = conn.execute(query).first()
            return None if row is None else _key(row)

        return await self.database.read(find)

    async def get_api_key(self, key_id: str) -> ApiKey | None:
        query = api_keys.select().where(api_keys.c.id == key_id)
        row = await self.database.read(lambda conn: conn.execute(query).first())
        return None if row is None else _key(row)

    async def set_api_key_limits(self, key_id: str, limits: KeyLimits) -> ApiKey | None:
        stmt = (
            api_keys.update()
            .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
            .values(asdict(limits))
            .returning(*api_keys.c)
        )
        row = await self.database.write(lambda conn: conn.execute(stmt).first())
        return None if row is None else _key(row)

    async def list_api_keys(self) -> list[ApiKey]:
        query = api_keys.select().order_by(api_keys.c.created_at, api_keys.c.id)
        return await self.database.read(lambda conn: [_key(r) for r in conn.execute(query)])

    async def revoke_api_key(self, key_id: str, now: float) -> bool:
        stmt = (
            api_keys.update()
            .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        return await self.database.write(lambda conn: conn.execute(stmt).rowcount > 0)

    async def usage_by_owner(
        self, owner: str | None, *, since: float | None = None, until: float | None = None
    ) -> dict[str, float]:
        query = _usage_query(since, until)
        if owner is not None:
            query = query.where(usage_rows.c.owner == owner)
        row = await self.database.read(lambda conn: conn.execute(query).one())
        return _totals(row)

    async def usage_per_owner(
        self, *, since: float | None = None, until: float | None = None
    ) -> dict[str | None, dict[str, float]]:
        query = _usage_query(since, until).add_columns(usage_rows.c.owner)
        query = query.group_by(usage_rows.c.owner).order_by(usage_rows.c.owner)
        rows = await self.database.read(lambda conn: list(conn.execute(query)))
        return {row.owner: _totals(row) for row in rows}

    async def record_durations(self, samples: Sequence[Sample]) -> None:
        if not samples:
            return
        now = self._clock()
        rows = [
            {"key": s.key, "mean_s": s.seconds, "samples": 1, "updated_at": now} for s in samples
        ]
        statement = _fold_durations(self.database.dialect_name)
        await self.database.write(lambda conn: conn.execute(statement, rows))

    async def durations(self) -> dict[str, float]:
        query = sa.select(duration_rows.c.key, duration_rows.c.mean_s)
        rows = await self.database.read(lambda conn: list(conn.execute(query)))
        return {key: float(mean) for key, mean in rows}

    async def ping(self) -> None:
        async with unreachable_as_unavailable():
            await self.database.read(lambda conn: conn.execute(sa.text("SELECT 1")))

    async def close(self) -> None:
        await self.database.dispose()

    def _insert_events(
        self,
        conn: Connection,
        task_id: str,
        first_id: int,
        entries: Sequence[JournalEntry],
    ) -> list[TaskEvent]:
        at = self._clock()
        made = [
            TaskEvent(id=first_id + i, task_id=task_id, type=entry.type, data=entry.data(), at=at)
            for i, entry in enumerate(entries)
        ]
        if made:
            conn.execute(_INSERT_EVENTS, [e.model_dump() for e in made])
        return made

    async def _one_task(self, query: sa.Select[Any], params: dict[str, Any]) -> Task | None:
        data = await self.database.read(lambda conn: conn.scalars(query, params).first())
        return None if data is None else Task.model_validate(data)

    async def _tasks(
        self, where: sa.ColumnElement[bool], *, order: sa.ColumnElement[Any], limit: int
    ) -> list[Task]:
        query = sa.select(tasks.c.data).where(where).order_by(order).limit(limit)
        return await self.database.read(
            lambda conn: [Task.model_validate(d) for d in conn.scalars(query)]
        )

    async def _create_conflict(self, task: Task) -> Conflict:
        if task.idempotency_key is not None:
            found = await self.find_by_idempotency_key(task.owner, task.idempotency_key)
            if found is not None and found.id != task.id:
                return Conflict(
                    f"idempotency_key={task.idempotency_key!r} is already used by task {found.id}",
                    task_id=found.id,
                )
        return Conflict(f"task {task.id} already exists", task_id=task.id)


def _usage_query(since: float | None, until: float | None) -> sa.Select[Any]:
    query = sa.select(
        sa.func.count(sa.distinct(usage_rows.c.task_id)).label("tasks"),
        sa.func.coalesce(sa.func.sum(usage_rows.c.gpu_seconds), 0.0).label("gpu_seconds"),
        sa.func.coalesce(sa.func.sum(usage_rows.c.wall_seconds), 0.0).label("wall_seconds"),
    )
    if since is not None:
        query = query.where(usage_rows.c.at >= since)
    if until is not None:
        query = query.where(usage_rows.c.at < until)
    return query


def _totals(row: sa.Row[Any]) -> dict[str, float]:
    return {
        "tasks": float(row.tasks),
        "gpu_seconds": float(row.gpu_seconds),
        "wall_seconds": float(row.wall_seconds),
    }


def _fold_durations(dialect: str) -> sa.Insert:
    """INSERT a first sample, or fold it into the stored mean: mean += (x - mean) / min(n, W)."""
    insert = (postgres_dialect if dialect == "postgresql" else sqlite_dialect).insert(duration_rows)
    stored, new = duration_rows.c, insert.excluded
    weight = sa.case((stored.samples + 1 < WINDOW, stored.samples + 1), else_=WINDOW)
    fold: sa.Insert = insert.on_conflict_do_update(
        index_elements=[stored.key],
        set_={
            "mean_s": stored.mean_s + (new.mean_s - stored.mean_s) / sa.cast(weight, sa.Float),
            "samples": stored.samples + 1,
            "updated_at": new.updated_at,
        },
    )
    return fold
