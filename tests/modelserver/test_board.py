"""The KServe model server's task board, against a fake engine backend."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.backends.contract import make_run
from tests.fakes.backend import SleepyBackend
from wanserve.domain.events import CancelledEvent, EngineEvent, ResultEvent, StepEvent
from wanserve.modelserver.board import TaskBoard


async def _all(board: TaskBoard, task_id: str, after: int = 0) -> list[tuple[int, EngineEvent]]:
    return [item async for item in board.events(task_id, after)]


async def test_a_task_runs_in_the_background_and_is_followed_in_pieces(tmp_path: Path) -> None:
    board = TaskBoard(SleepyBackend(0.05), tmp_path / "board")
    spec = make_run(tmp_path, "video_a", steps=3).spec
    assert board.submit(spec)
    assert not board.submit(spec)  # a retried submit while it runs: nothing new
    assert board.running == ["video_a"]
    everything = await asyncio.wait_for(_all(board, "video_a"), 10)
    assert [seq for seq, _ in everything] == list(range(1, len(everything) + 1))
    assert isinstance(everything[-1][1], ResultEvent)
    assert [e.step for _, e in everything if isinstance(e, StepEvent)] == [1, 2, 3]
    rest = await _all(board, "video_a", after=3)  # a caller that saw 3 events asks again
    assert rest == everything[3:]
    video = board.file("video_a", "video.mp4")
    assert video.is_file() and video.is_relative_to(tmp_path / "board" / "video_a")
    with pytest.raises(KeyError):
        board.file("video_a", "secrets.txt")
    assert board.running == []
    assert board.submit(spec)  # after it ended, the same task id is a new run
    assert isinstance((await _all(board, "video_a"))[-1][1], ResultEvent)
    await board.close()


async def test_cancel_stops_the_task_and_unknown_tasks_are_key_errors(tmp_path: Path) -> None:
    board = TaskBoard(SleepyBackend(0.2), tmp_path / "board")
    board.submit(make_run(tmp_path, "video_b", steps=50).spec)
    await asyncio.sleep(0.3)
    assert await board.cancel("video_b")
    events = await asyncio.wait_for(_all(board, "video_b"), 10)
    assert isinstance(events[-1][1], CancelledEvent)
    assert not await board.cancel("video_b")  # ended
    assert not await board.cancel("video_nope")
    with pytest.raises(KeyError):
        await _all(board, "video_nope")
    await board.close()


async def test_an_ended_task_is_forgotten_after_its_retention(tmp_path: Path) -> None:
    now = [1000.0]
    board = TaskBoard(SleepyBackend(0.0), tmp_path / "board", retention_s=60, clock=lambda: now[0])
    board.submit(make_run(tmp_path, "video_c", steps=1).spec)
    await _all(board, "video_c")
    now[0] += 61
    board.submit(make_run(tmp_path, "video_d", steps=1).spec)  # a submit sweeps the old ones
    with pytest.raises(KeyError):
        board.file("video_c", "video.mp4")
    assert not (tmp_path / "board" / "video_c").exists()
    await board.close()
