"""The video service: what each API route does, above the store, the queue and the artifacts.

Routes call exactly one method here. Every method takes the calling `Principal` and hides other
owners' tasks behind NotFound. A new task and a cancel request are written by the journal
(`wanserve.journal`), like every other task change.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from wanserve.api.estimates import Estimator
from wanserve.api.keys import Principal
from wanserve.api.quotas import Quotas
from wanserve.api.served import ServedModels
from wanserve.api.submission import Submission
from wanserve.artifacts.base import ArtifactStore
from wanserve.artifacts.keys import input_image_key, poster_key, task_prefix
from wanserve.domain.deliveries import WebhookDelivery
from wanserve.domain.errors import (
    Conflict,
    IdempotencyConflict,
    InvalidRequest,
    NotFound,
    StaleChange,
)
from wanserve.domain.spec import MAX_SEED, VideoRequest, resolve_spec
from wanserve.domain.task import Task, TaskState
from wanserve.domain.transitions import request_cancel
from wanserve.domain.types import Clock
from wanserve.journal import Journal
from wanserve.queue.base import JobQueue
from wanserve.store.base import TaskPage, TaskStore
from wanserve.webhooks.urls import UrlPolicy, UrlRefused

__all__ = ["Content", "ServiceConfig", "VideoService", "VideoView", "new_video_id"]

logger = logging.getLogger(__name__)

Variant = Literal["video", "thumbnail"]
_CANCEL_TRIES = 3  # a cancel races a dispatcher's start or settling at most this often
_NO_WEBHOOKS = (
    "this server sends no webhooks (its operator turns them on with WANSERVE_WEBHOOKS__SECRET)"
)


def new_video_id() -> str:
    """`video_` and 128 random bits in hex. Not from `uuid4`: its `os.urandom` releases the GIL,
    and under load the loop thread then waits up to a switch interval (5 ms) for the store's
    threads to hand it back. Ids need to be unique, not secret (others' tasks answer 404)."""
    return f"video_{random.getrandbits(128):032x}"


def _random_seed() -> int:
    return random.randint(0, MAX_SEED)  # not `secrets`: see new_video_id


@dataclass(frozen=True, slots=True)
class ServiceConfig:
    max_attempts: int = 3
    task_timeout_s: float = 3600.0
    capacity: int = 1
    presign_ttl_s: int = 3600


@dataclass(frozen=True, slots=True)
class VideoView:
    """A task as a client sees it now: with its queue position and ETA."""

    task: Task
    queue_position: int | None
    eta_seconds: float | None


@dataclass(frozen=True, slots=True)
class Content:
    """Where a task's file is: a presigned `url`, or an artifact `key` to stream."""

    key: str
    content_type: str
    url: str | None


class VideoService:
    def __init__(
        self,
        *,
        store: TaskStore,
        queue: JobQueue,
        artifacts: ArtifactStore,
        config: ServiceConfig,
        served: ServedModels,
        clock: Clock,
        new_id: Callable[[], str] = new_video_id,
        seed_factory: Callable[[], int] = _random_seed,
        webhooks: UrlPolicy | None = None,
    ) -> None:
        self.store = store
        self.queue = queue
        self._journal = Journal(store, queue, clock=clock)
        self.webhooks = webhooks  # None: webhooks are off
        self.artifacts = artifacts
        self.config = config
        self.served = served
        self.clock = clock
        self._new_id = new_id
        self._seed_factory = seed_factory
        self.estimator = Estimator(store, queue, clock, default_slots=config.capacity)
        self.quotas = Quotas(store, clock)

    async def create_video(
        self, principal: Principal, submission: Submission, idempotency_key: str | None
    ) -> tuple[Task, bool]:
        """Validate, store and enqueue a new task; (task, created).

        Raises InvalidRequest before anything is stored (also for a model this server does not
        serve). With an `idempotency_key` already used
        by this principal: the same request returns the earlier task (created False), another
        request raises IdempotencyConflict.
        """
        self.served.check(submission.request.model)
        self._check_timeout(submission)
        await self._check_webhook(submission)
        # Only a keyed request is ever compared with another (a sha256 of the body costs).
        fingerprint = None if idempotency_key is None else submission.fingerprint()
        request = submission.request
        if request.loras:  # the adapters' directories and cards: read off the event loop
            request = await asyncio.to_thread(self.served.with_adapters, request)
        task = self._new_task(principal, submission, request, idempotency_key, fingerprint)
        if idempotency_key is not None:
            earlier = await self._replay(principal, idempotency_key, fingerprint)
            if earlier is not None:
                return earlier, False
        await self.quotas.check(principal, task.priority)  # 429 before anything is stored
        await self._store_image(task, submission)
        try:
            task = await self._journal.create(task)
        except BaseException as exc:
            if submission.image is not None:  # the task never existed: neither does its image
                await self.artifacts.delete_prefix(task_prefix(task.id))
            if not isinstance(exc, Conflict) or idempotency_key is None:
                raise
            earlier = await self._replay(principal, idempotency_key, fingerprint)
            if earlier is None:
                raise
            return earlier, False
        await self._enqueue(task, principal.limits.weight)
        return task, True

    def _check_timeout(self, submission: Submission) -> None:
        longest = self.config.task_timeout_s
        if submission.timeout_s is not None and submission.timeout_s > longest:
            rule = f"must be at most {longest:g} (this server's task timeout)"
            raise InvalidRequest("timeout_s", submission.timeout_s, rule)

    async def _check_webhook(self, submission: Submission) -> None:
        """InvalidRequest naming webhook_url when webhooks are off or the URL policy refuses
        it (its host resolved here: the sender checks it again before each attempt)."""
        webhook = submission.webhook
        if webhook is None:
            return
        if self.webhooks is None:
            raise InvalidRequest("webhook_url", webhook.url, _NO_WEBHOOKS)
        try:
            await self.webhooks.resolve(webhook.url)
        except UrlRefused as refused:
            raise InvalidRequest("webhook_url", webhook.url, str(refused)) from None

    async def _store_image(self, task: Task, submission: Submission) -> None:
        image = submission.image
        if image is not None and task.spec.image is not None:
            await self.artifacts.put_bytes(task.spec.image, image.data, image.content_type)

    def _new_task(
        self,
        principal: Principal,
        submission: Submission,
        request: VideoRequest,
        key: str | None,
        fingerprint: str | None,
    ) -> Task:
        """The task of `request` (the submission's, its adapters' defaults applied)."""
        task_id = self._new_id()
        image = submission.image
        if image is not None:
            request = request.model_copy(
                update={"image": input_image_key(task_id, image.extension)}
            )
        spec = resolve_spec(request, self._seed_factory).model_copy(update={"task_id": task_id})
        now = self.clock()
        return Task(
            id=task_id,
            owner=principal.key_id,
            spec=spec,
            priority=submission.priority,
            max_attempts=self.config.max_attempts,
            timeout_s=submission.timeout_s or self.config.task_timeout_s,
            created_at=now,
            phase_started_at=now,
            total_steps=spec.num_inference_steps,
            idempotency_key=key,
            request_hash=fingerprint,
            webhook=submission.webhook,
        )

    async def _replay(self, principal: Principal, key: str, fingerprint: str | None) -> Task | None:
        earlier = await self.store.find_by_idempotency_key(principal.key_id, key)
        if earlier is None:
            return None
        if earlier.request_hash != fingerprint:
            raise IdempotencyConflict(
                f"Idempotency-Key {key!r} was used for another request (task {earlier.id})",
                errors=[
                    {
                        "field": "Idempotency-Key",
                        "value": key,
                        "rule": "must not be reused with a different body",
                    }
                ],
            )
        return earlier

    async def _enqueue(self, task: Task, weight: float) -> None:
        try:
            await self.queue.enqueue(
                task.id, priority=task.priority, owner=task.owner, weight=weight
            )
        except ConnectionError:
            # The store holds the task as queued; the reconciler enqueues it once the queue is back.
            logger.warning(
                "queue unreachable; task left for the reconciler", extra={"task_id": task.id}
            )

    async def get_video(self, principal: Principal, task_id: str) -> VideoView:
        task = await self.visible_task(principal, task_id)
        return await self.estimate(task)

    async def estimate(self, task: Task) -> VideoView:
        """`task` with its queue position and its full ETA (the queue ahead of it is read)."""
        position = await self.queue.position(task.id) if task.state == TaskState.QUEUED else None
        return VideoView(task, position, await self.estimator.eta(task, position))

    async def position_and_eta(self, task: Task) -> tuple[int | None, float | None]:
        view = await self.estimate(task)
        return view.queue_position, view.eta_seconds

    async def views(self, tasks: list[Task]) -> list[VideoView]:
        """Tasks without queue positions, with quick ETAs (for pages and write responses)."""
        etas = await self.estimator.quick(tasks)
        return [VideoView(task, None, etas[task.id]) for task in tasks]

    async def list_videos(
        self,
        principal: Principal,
        *,
        after: str | None,
        limit: int,
        order: Literal["asc", "desc"],
        states: Sequence[TaskState] | None = None,
    ) -> TaskPage:
        if after is not None:
            await self.visible_task(principal, after, field="after")
        return await self.store.list_tasks(
            owner=principal.list_owner, after=after, limit=limit, order=order, states=states
        )

    async def cancel_video(self, principal: Principal, task_id: str) -> Task:
        """Queued: cancelled at once. Running: flagged; the dispatcher stops it. Raises
        InvalidTransition (409) when the task is already terminal."""
        for tries_left in reversed(range(_CANCEL_TRIES)):
            task = await self.visible_task(principal, task_id)
            try:
                task = await self._journal.record(request_cancel(task, self.clock()))
                break
            except StaleChange:  # a dispatcher changed it since we read it: read it again
                if not tries_left:
                    raise
        await self.queue.cancel(task.id)  # also tells listeners (the dispatcher) CANCEL_MESSAGE
        return task

    async def delete_video(self, principal: Principal, task_id: str) -> None:
        """Remove a task, its events and its files; a live task is cancelled first."""
        task = await self.visible_task(principal, task_id)
        if not task.is_terminal:
            await self.queue.cancel(task.id)
        await self.artifacts.delete_prefix(task_prefix(task.id))
        await self.store.delete_task(task.id)

    async def content(self, principal: Principal, task_id: str, variant: Variant) -> Content:
        """Where the finished video (or its poster) is; NotFound until the task completed."""
        task = await self.visible_task(principal, task_id)
        if task.state != TaskState.COMPLETED:
            raise NotFound(
                f"video {task_id} has no {variant} yet: status is {task.state.value} "
                "(content exists once it is completed)",
                errors=[{"field": "video_id", "value": task_id, "rule": "must be completed"}],
            )
        if task.result is None:
            raise NotFound(
                f"video {task_id} has expired: its files were deleted after the retention period",
                errors=[{"field": "video_id", "value": task_id, "rule": "must not be expired"}],
            )
        if variant == "thumbnail":
            key, content_type = task.result.poster_key or poster_key(task.id), "image/jpeg"
        else:
            key, content_type = task.result.video_key, "video/mp4"
        url = await self.artifacts.url(key, self.config.presign_ttl_s)
        return Content(key=key, content_type=content_type, url=url)

    async def webhook_deliveries(self, principal: Principal, task_id: str) -> list[WebhookDelivery]:
        """A task's webhook deliveries with their attempts (NotFound as for the task)."""
        task = await self.visible_task(principal, task_id)
        return await self.store.webhook_deliveries(task.id)

    async def visible_task(
        self, principal: Principal, task_id: str, field: str = "video_id"
    ) -> Task:
        """The task if it exists and `principal` may see it; else NotFound (the same for both)."""
        task = await self.store.get_task(task_id)
        if task is None or not principal.can_see(task.owner):
            raise NotFound(
                f"no video with id {task_id!r}",
                errors=[
                    {
                        "field": field,
                        "value": task_id,
                        "rule": "must be the id of one of your videos",
                    }
                ],
            )
        return task
