"""The InferenceBackend contract, run against every backend (STYLE rule 27).

A test module subclasses `BackendContract` and provides a `subject` fixture: the backend under
test and what plays the world around it (an emulated cluster's operator and pods, say). Every
backend must:

- stream a run's steps in order and end it with its result;
- end a run cancelled when the cancel comes before its first event ("queued" at the backend) or
  while it runs;
- on close, stop the runs in flight (each ends with a cancel or a retryable error);
- end every stream with exactly one terminal event, its last, and leave nothing of the run
  behind (no process, no job).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Protocol

from wanserve.backends.base import InferenceBackend, Run
from wanserve.domain.events import (
    CancelledEvent,
    EngineEvent,
    ErrorEvent,
    ResultEvent,
    StepEvent,
    is_terminal,
)
from wanserve.domain.spec import VideoRequest, resolve_spec

__all__ = ["BackendContract", "ServerSubject", "Stream", "Subject", "make_run"]

TIMEOUT_S = 30.0


class Subject(Protocol):
    """A backend under the contract, and the world its runs need."""

    backend: InferenceBackend

    async def drive(self, run: Run) -> None:
        """Play what runs `run` outside this process (none for local engines); return when the
        run ended or was stopped."""
        ...

    async def leftovers(self, run: Run) -> list[str]:
        """What of `run` still exists (processes, jobs), once given time to go; [] when none."""
        ...


class ServerSubject:
    """A backend whose runs go to a model server that stays up (KServe's, TorchServe's): nothing
    to drive, and no process per run to leave behind (the server's engine stays loaded)."""

    def __init__(self, backend: InferenceBackend) -> None:
        self.backend = backend

    async def drive(self, run: Run) -> None:
        return None

    async def leftovers(self, run: Run) -> list[str]:
        return []


def make_run(tmp_path: Path, task_id: str, steps: int) -> Run:
    """A run of the "sleeps" behaviour: `steps` denoising steps, each taking a while."""
    request = VideoRequest(
        model="wan2.2-tiny", prompt="sleeps", size="32x32", num_inference_steps=steps
    )
    spec = resolve_spec(request, seed_factory=lambda: 1)
    workdir = tmp_path / task_id
    spec = spec.model_copy(update={"task_id": task_id, "output": str(workdir / "out")})
    return Run(task_id=task_id, attempt=1, spec=spec, workdir=workdir)


class Stream:
    """A run's events, consumed in the background while its world is driven."""

    def __init__(self, subject: Subject, run: Run) -> None:
        self.run = run
        self.events: list[EngineEvent] = []
        self._iterator: AsyncIterator[EngineEvent] = subject.backend.run(run)
        self._consumer = asyncio.create_task(self._consume())
        self._driver = asyncio.create_task(subject.drive(run))

    async def _consume(self) -> None:
        async for event in self._iterator:
            self.events.append(event)

    async def first_step(self) -> None:
        async def seen() -> None:
            while not any(isinstance(e, StepEvent) for e in self.events):
                assert not self._consumer.done(), f"the run ended early: {self.events}"
                await asyncio.sleep(0.01)

        await asyncio.wait_for(seen(), TIMEOUT_S)

    async def end(self) -> EngineEvent:
        """The terminal event, after checking it is the stream's only one and its last."""
        await asyncio.wait_for(self._consumer, TIMEOUT_S)
        await asyncio.wait_for(self._driver, TIMEOUT_S)
        terminal = [e for e in self.events if is_terminal(e)]
        assert len(terminal) == 1 and self.events[-1] is terminal[0], self.events
        return terminal[0]


class BackendContract:
    """What every InferenceBackend does; subclasses provide the `subject` fixture."""

    async def test_a_run_streams_its_steps_and_ends_with_its_result(
        self, subject: Subject, tmp_path: Path
    ) -> None:
        run = make_run(tmp_path, "video_done", steps=3)
        stream = Stream(subject, run)
        last = await stream.end()
        assert isinstance(last, ResultEvent) and last.task_id == run.task_id
        steps = [e.step for e in stream.events if isinstance(e, StepEvent)]
        assert steps == [1, 2, 3]
        assert await subject.leftovers(run) == []

    async def test_a_cancel_before_the_first_event_ends_the_run_cancelled(
        self, subject: Subject, tmp_path: Path
    ) -> None:
        run = make_run(tmp_path, "video_queued", steps=50)
        stream = Stream(subject, run)
        await subject.backend.cancel(run.task_id)
        assert isinstance(await stream.end(), CancelledEvent)
        assert not any(isinstance(e, StepEvent) and e.step > 5 for e in stream.events)
        assert await subject.leftovers(run) == []

    async def test_a_cancel_while_running_ends_the_run_cancelled(
        self, subject: Subject, tmp_path: Path
    ) -> None:
        run = make_run(tmp_path, "video_running", steps=50)
        stream = Stream(subject, run)
        await stream.first_step()
        await subject.backend.cancel(run.task_id)
        assert isinstance(await stream.end(), CancelledEvent)
        await subject.backend.cancel(run.task_id)  # idempotent
        assert await subject.leftovers(run) == []

    async def test_a_later_run_of_a_cancelled_task_is_not_cancelled(
        self, subject: Subject, tmp_path: Path
    ) -> None:
        first = make_run(tmp_path, "video_again", steps=50)
        stream = Stream(subject, first)
        await stream.first_step()
        await subject.backend.cancel(first.task_id)
        assert isinstance(await stream.end(), CancelledEvent)
        retry = make_run(tmp_path / "retry", "video_again", steps=2)
        retry = Run(retry.task_id, 2, retry.spec, retry.workdir)
        assert isinstance(await Stream(subject, retry).end(), ResultEvent)

    async def test_close_stops_the_runs_in_flight(self, subject: Subject, tmp_path: Path) -> None:
        running = Stream(subject, make_run(tmp_path, "video_running", steps=50))
        await running.first_step()
        waiting = Stream(subject, make_run(tmp_path, "video_waiting", steps=50))
        await subject.backend.close()
        for stream in (running, waiting):
            last = await stream.end()
            assert isinstance(last, CancelledEvent) or (
                isinstance(last, ErrorEvent) and last.retryable
            ), last
            assert await subject.leftovers(stream.run) == []
