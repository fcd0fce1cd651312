"""Retention: delete the files of tasks whose `expires_at` has passed.

The task itself stays (history); it loses its result and its `expires_at`, and its log gets an
"expired" event, so the next sweep does not see it again and content requests answer 404.
The dispatcher calls `expire_artifacts` periodically.
"""

from __future__ import annotations

import logging

from wanserve.artifacts.base import ArtifactStore
from wanserve.artifacts.keys import task_prefix
from wanserve.store.base import TaskStore

__all__ = ["expire_artifacts"]

logger = logging.getLogger(__name__)


async def expire_artifacts(
    store: TaskStore, artifacts: ArtifactStore, now: float, limit: int = 100
) -> list[str]:
    """Delete up to `limit` expired tasks' files; the ids of the tasks expired."""
    expired = []
    for task in await store.expired_tasks(now, limit=limit):
        files = await artifacts.delete_prefix(task_prefix(task.id))
        event = {"expires_at": task.expires_at, "files_deleted": files}
        await store.save_task(
            task.model_copy(update={"expires_at": None, "result": None}), [("expired", event)]
        )
        logger.info("expired %d files", files, extra={"task_id": task.id})
        expired.append(task.id)
    return expired
