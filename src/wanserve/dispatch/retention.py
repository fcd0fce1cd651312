"""Artifact retention: completed tasks past `expires_at` lose their files and their record."""

from __future__ import annotations

import logging

from wanserve.artifacts.base import ArtifactStore
from wanserve.store.base import TaskStore

__all__ = ["sweep_expired"]

log = logging.getLogger(__name__)


async def sweep_expired(store: TaskStore, artifacts: ArtifactStore, now: float) -> list[str]:
    """Delete every expired task's artifacts (`tasks/<id>/`), then the task; the ids removed."""
    removed = []
    for task in await store.expired_tasks(now):
        await artifacts.delete_prefix(f"tasks/{task.id}/")
        await store.delete_task(task.id)
        removed.append(task.id)
    if removed:
        log.info("retention removed %d expired task(s)", len(removed))
    return removed
