"""Which webhook events a task change sends, and the retry schedule of a delivery."""

from __future__ import annotations

import itertools
from typing import get_args

import pytest

from tests.domain.tasks import BOOM, RESULT
from tests.fixtures.store import make_task
from wanserve.api.schemas import WebhookEventName
from wanserve.domain.deliveries import is_retryable, outbox, retry_delay, webhook_events
from wanserve.domain.events import Phase
from wanserve.domain.task import Task
from wanserve.domain.transitions import (
    complete,
    fail,
    mark_cancelled,
    record_phase,
    record_step,
    request_cancel,
    requeue,
    start,
)
from wanserve.domain.webhooks import DEFAULT_EVENTS, WebhookEvent, WebhookTarget

E = WebhookEvent


def _task(events: tuple[WebhookEvent, ...] = tuple(WebhookEvent)) -> Task:
    target = WebhookTarget(url="https://hooks.test/in", events=events, links_base="http://api")
    return make_task("t1").model_copy(update={"webhook": target, "total_steps": 10})


def test_started_and_each_ending_come_from_state_entries() -> None:
    queued = _task()
    running = start(queued, 1.0, "local")
    assert webhook_events(running) == [E.STARTED]
    assert webhook_events(complete(running.task, RESULT, 2.0, None)) == [E.COMPLETED]
    assert webhook_events(fail(running.task, BOOM, 2.0)) == [E.FAILED]
    assert webhook_events(mark_cancelled(running.task, 2.0)) == [E.CANCELLED]
    assert webhook_events(mark_cancelled(queued, 2.0)) == [E.CANCELLED]
    assert webhook_events(request_cancel(running.task, 2.0)) == []  # only flagged
    retry = requeue(running.task, 2.0, 1.0, error=BOOM)
    assert webhook_events(retry) == []
    assert webhook_events(start(retry.task, 3.0, "local")) == [E.STARTED]  # the next attempt


def test_progress_is_sent_once_per_tenth() -> None:
    running = start(_task(), 1.0, "local").task
    loading = record_phase(running, Phase.LOADING, 1.0)
    assert webhook_events(loading) == []
    sent = []
    task = loading.task
    for step in range(1, 11):
        change = record_step(task, step, 10, 1.0 + step)
        sent.append(webhook_events(change))
        task = change.task
    # 9.5% a step: 9, 19, 28, 38, 47, 57, 66, 76, 85, 95
    assert sent == [[], [E.PROGRESS], *[[E.PROGRESS]] * 8]
    assert webhook_events(record_phase(task, Phase.DECODING, 12.0)) == []  # 95 -> 96: same tenth


def test_outbox_keeps_the_events_the_task_asked_for() -> None:
    ids = (f"evt_{n}" for n in itertools.count())
    queued = _task(events=(E.COMPLETED,))
    assert outbox(start(queued, 1.0, "local"), 1.0, lambda: next(ids)) == []
    running = start(queued, 1.0, "local").task
    done = complete(running, RESULT, 2.0, None)
    [message] = outbox(done, 2.5, lambda: next(ids))
    assert (message.id, message.type, message.created_at) == ("evt_0", "video.completed", 2.5)
    assert message.url == "https://hooks.test/in" and message.task == done.task
    assert outbox(start(make_task("plain"), 1.0, "local"), 1.0, lambda: next(ids)) == []


def test_default_events_are_the_endings() -> None:
    assert WebhookTarget(url="https://hooks.test").events == DEFAULT_EVENTS
    assert {e.value for e in DEFAULT_EVENTS} == {"completed", "failed", "cancelled"}
    assert set(get_args(WebhookEventName)) == {e.value for e in WebhookEvent}  # API == domain


def test_retry_delay_doubles_up_to_the_cap_and_jitter_takes_off_at_most_half() -> None:
    ceilings = [retry_delay(n, 5.0, 60.0, jitter=0.0) for n in range(1, 7)]
    assert ceilings == [5.0, 10.0, 20.0, 40.0, 60.0, 60.0]
    assert retry_delay(3, 5.0, 60.0, jitter=0.5) == 15.0
    assert retry_delay(3, 5.0, 60.0, jitter=0.999) == pytest.approx(10.01)


@pytest.mark.parametrize(
    ("status", "retried"),
    [(None, True), (500, True), (503, True), (429, True), (408, True), (404, False), (400, False),
     (301, False), (410, False)],
)  # fmt: skip
def test_timeouts_5xx_and_429_are_retried_other_answers_are_final(
    status: int | None, retried: bool
) -> None:
    assert is_retryable(status) is retried
