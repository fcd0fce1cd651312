"""Where a task's files live in the artifact store: one prefix per task.

    tasks/<task id>/input.<ext>   the uploaded input image (i2v); `spec.image` holds this key
    tasks/<task id>/video.mp4     the result
    tasks/<task id>/poster.jpg    its first frame (the "thumbnail" variant)

Deleting `task_prefix(id)` removes everything of a task.
"""

from __future__ import annotations

__all__ = ["input_image_key", "poster_key", "task_prefix", "video_key"]


def task_prefix(task_id: str) -> str:
    return f"tasks/{task_id}/"


def video_key(task_id: str) -> str:
    return f"tasks/{task_id}/video.mp4"


def poster_key(task_id: str) -> str:
    return f"tasks/{task_id}/poster.jpg"


def input_image_key(task_id: str, extension: str) -> str:
    return f"tasks/{task_id}/input.{extension}"
