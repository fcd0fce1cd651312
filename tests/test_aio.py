"""cancel_and_wait stops tasks whose code absorbs a cancellation (as redis-py can)."""

from __future__ import annotations

import asyncio

import pytest

from wanserve.aio import cancel_and_wait


async def _absorbs_first_cancel(rounds: list[int]) -> None:
    """A loop over calls where one cancellation is lost, like a redis-py command finishing."""
    absorbed = False
    while True:
        rounds.append(1)
        try:
            await asyncio.sleep(0.01)
        except asyncio.CancelledError:
            if absorbed:
                raise
            absorbed = True
            asyncio.current_task().uncancel()  # type: ignore[union-attr]


async def test_keeps_cancelling_until_the_task_is_done() -> None:
    rounds: list[int] = []
    task = asyncio.create_task(_absorbs_first_cancel(rounds))
    await asyncio.sleep(0.03)
    await asyncio.wait_for(cancel_and_wait(task, every_s=0.01), 5)
    assert task.cancelled()
    # One cancel alone leaves such a loop running:
    again = asyncio.create_task(_absorbs_first_cancel([]))
    await asyncio.sleep(0.03)
    again.cancel()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(asyncio.shield(again), 0.2)
    await cancel_and_wait(again)


async def test_finished_and_failed_tasks_are_left_as_they_are() -> None:
    async def fail() -> None:
        raise RuntimeError("boom")

    done = asyncio.create_task(asyncio.sleep(0, result=7))
    failed = asyncio.create_task(fail())
    await asyncio.sleep(0.01)
    await cancel_and_wait(done, failed)  # nothing to cancel; the failure counts as retrieved
    assert done.result() == 7 and isinstance(failed.exception(), RuntimeError)
