"""Retention: delete the files of tasks whose `expires_at` has passed.

The task itself stays (history); it loses its result and its `expires_at`, and its log gets an
"expired" entry, so the next sweep does not see it again and content requests answer 404. The
dispatcher sweeps every reconcile interval.
"""

from __future__ import annotations

import logging

from wanserve.artifacts.base import ArtifactStore
from wanserve.artifacts.keys import task_prefix
from wanserve.domain.transitions import expire
from wanserve.journal import Journal
from wanserve.store.base import TaskStore

__all__ = ["expire_artifacts"]

log = logging.getLogger(__name__)


async def expire_artifacts(
    store: TaskStore, artifacts: ArtifactStore, journal: Journal, now: float, limit: int = 100
) -> list[str]:
    """Delete up to `limit` expired tasks' files; the ids of the tasks expired."""
    expired = []
    for task in await store.expired_tasks(now, limit=limit):
        files = await artifacts.delete_prefix(task_prefix(task.id))
        await journal.record(expire(task, files))
        log.info("expired %d files", files, extra={"task_id": task.id})
        expired.append(task.id)
    return expired
