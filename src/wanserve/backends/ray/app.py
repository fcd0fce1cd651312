"""The Serve application: `build(args)` -> one `WanEngine` deployment of one model.

A replica is one GPU group. Serve places it in the first bundle of its placement group; it starts
`ranks` rank actors (wanserve.backends.ray.ranks), one per bundle, and has them load the model in
the background as soon as it is constructed, so Serve counts the replica up at once and a task
that reaches it while it loads shows a `loading` phase. A task is one streaming request
(`generate`): it yields dicts, each an engine event as JSON (`event`), the rank 0 actor that
runs it first (`rank0`, so the caller can cancel at the engine), and with the result the
video's bytes (`files`: the replica and rank 0 share a node, a caller may not). Inputs travel the
same way (`image`). A rank that dies, or a group that does not stop after a terminal event,
ends the task with a retryable error; the group is dropped and loaded again for the next task.
Serve's own cancel of the request (the caller gave up) stops the engine too. The rank actors are
owned by the replica, so they end with it: no actor outlives a replica that Serve removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import ray
from ray import serve
from ray.util.placement_group import get_current_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from wanserve.backends.base import retryable_error
from wanserve.backends.ray.config import AppArgs, deployment_options
from wanserve.backends.ray.ranks import RankActor
from wanserve.domain.events import (
    EngineEvent,
    Phase,
    PhaseEvent,
    ResultEvent,
    is_terminal,
    parse_event,
)

__all__ = ["WanEngine", "build"]

log = logging.getLogger(__name__)

_STOP_GRACE_S = 15.0  # ranks must finish this long after the task's terminal event


class _Group:
    """The rank actors of one replica, once loaded."""

    def __init__(self, ranks: list[Any]) -> None:
        self.ranks = ranks
        self.nodes: list[str] = []  # the Ray node of each rank

    def kill(self) -> None:
        for rank in self.ranks:
            with contextlib.suppress(Exception):
                ray.kill(rank, no_restart=True)


class WanEngine:
    """One replica: a loaded engine group that runs one task at a time."""

    def __init__(self, args: dict[str, Any]) -> None:
        self.args = AppArgs.model_validate(args)
        self._group: asyncio.Task[_Group] | None = None
        self._scratch = Path(tempfile.mkdtemp(prefix="wanserve-replica-"))
        self._load()

    def _load(self) -> asyncio.Task[_Group]:
        if self._group is None:
            self._group = asyncio.get_running_loop().create_task(self._start_group())
        return self._group

    async def _start_group(self) -> _Group:
        args, pg = self.args, get_current_placement_group()
        actor: Any = ray.remote(RankActor)
        ranks = [
            actor.options(
                num_cpus=args.cpus_per_rank,
                num_gpus=args.gpus_per_rank,
                max_concurrency=2,  # `cancel` beside `run`
                scheduling_strategy=PlacementGroupSchedulingStrategy(
                    pg, placement_group_bundle_index=index
                )
                if pg is not None
                else None,
            ).remote(index, args.ranks, args.model_dump())
            for index in range(args.ranks)
        ]
        group = _Group(ranks)
        try:
            master = await ranks[0].endpoint.remote()
            loads = [rank.load.remote(master) for rank in ranks]
            loaded = await asyncio.wait_for(asyncio.gather(*loads), args.load_timeout_s)
        except BaseException:
            group.kill()
            raise
        group.nodes = [info["node"] for info in loaded]
        log.info("%s loaded on %d rank(s), nodes %s", args.model, args.ranks, group.nodes)
        return group

    async def _loaded(self) -> _Group:
        """The loaded group; a failed load is forgotten so the next task tries again."""
        task = self._load()
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            raise
        except BaseException:
            if self._group is task:
                self._group = None
            raise

    def _drop(self, group: _Group) -> None:
        """Forget a broken group: killed now, loaded again for the next task."""
        group.kill()
        if self._group is not None and self._group.done() and not self._group.cancelled():
            if self._group.exception() is None and self._group.result() is group:
                self._group = None

    def check_health(self) -> None:
        """Serve's health check: a load that failed makes the replica be replaced."""
        group = self._group
        if group is not None and group.done() and not group.cancelled():
            error = group.exception()
            if error is not None:
                raise RuntimeError(f"the engine group did not load: {error}")

    async def generate(self, request: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        spec: dict[str, Any] = dict(request["spec"])
        task_id: str = spec["task_id"]
        if not (self._group is not None and self._group.done()):
            yield _event(PhaseEvent(task_id=task_id, at=time.time(), phase=Phase.LOADING))
        try:
            group = await self._loaded()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            message = f"the engine group of {self.args.model} did not load: {exc}"
            yield _event(retryable_error(task_id, "engine_exited", message))
            return
        workdir = self._scratch / task_id
        workdir.mkdir(parents=True, exist_ok=True)
        try:
            spec["output"] = str(workdir / "out")
            if request.get("image") is not None:
                image = workdir / ("input" + request.get("image_suffix", ".png"))
                image.write_bytes(request["image"])
                spec["image"] = str(image)
            frames = workdir / "frames.npy" if request.get("save_frames") else None
            yield {"rank0": group.ranks[0], "nodes": group.nodes}
            async for item in self._run(group, spec, task_id, frames):
                yield item
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    async def _run(
        self, group: _Group, spec: dict[str, Any], task_id: str, frames: Path | None
    ) -> AsyncIterator[dict[str, Any]]:
        q: asyncio.Queue[EngineEvent | BaseException] = asyncio.Queue()
        streams = [
            asyncio.create_task(_follow(_stream(rank, spec, frames), q)) for rank in group.ranks
        ]
        ended = False
        try:
            while not ended:
                item = await q.get()
                if isinstance(item, BaseException):
                    self._drop(group)
                    message = f"a rank of the engine group died: {type(item).__name__}: {item}"
                    ended = True
                    yield _event(retryable_error(task_id, "peer_failed", message))
                    return
                ended = is_terminal(item)
                if isinstance(item, ResultEvent):
                    yield {**_event(item), "files": _files(item, frames)}
                else:
                    yield _event(item)
        finally:
            # However the request ends (done, cancelled by Serve, closed by its caller), the
            # ranks finish this run before the replica takes another: stopped at their next
            # step when the task did not end; a group that does not stop (stuck in a collective
            # with a failed peer) is replaced.
            if not ended:
                with contextlib.suppress(Exception):
                    await group.ranks[0].cancel.remote(task_id)
            _, pending = await asyncio.wait(streams, timeout=_STOP_GRACE_S)
            if pending:
                self._drop(group)
            for stream in streams:
                stream.cancel()

    def __del__(self) -> None:
        group = self._group
        if group is not None and group.done() and not group.cancelled() and not group.exception():
            group.result().kill()
        shutil.rmtree(self._scratch, ignore_errors=True)


async def _follow(stream: Any, events: asyncio.Queue[EngineEvent | BaseException]) -> None:
    """Pass one rank's events on; its death as an exception."""
    try:
        async for ref in stream:
            events.put_nowait(parse_event(await ref))
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        events.put_nowait(exc)


def _event(event: EngineEvent) -> dict[str, Any]:
    return {"event": event.model_dump_json()}


def _stream(rank: Any, spec: dict[str, Any], frames: Path | None) -> Any:
    """A rank's run of `spec`: a streaming generator of its events."""
    saved = str(frames) if frames is not None else None
    return rank.run.options(num_returns="streaming").remote(spec, saved)


def _files(event: ResultEvent, frames: Path | None) -> dict[str, bytes]:
    paths = [Path(event.path)] + ([Path(event.poster)] if event.poster else [])
    paths += [frames] if frames is not None else []
    return {path.name: path.read_bytes() for path in paths if path.is_file()}


def build(args: dict[str, Any]) -> serve.Application:
    """The application of `args` (AppArgs): what `serve.run` and a RayService's serveConfigV2
    (`import_path: wanserve.backends.ray.app:build`) start."""
    parsed = AppArgs.model_validate(args)
    deployment: Any = serve.deployment(WanEngine)
    application: serve.Application = deployment.options(**deployment_options(parsed)).bind(
        parsed.model_dump()
    )
    return application
