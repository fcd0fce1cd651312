"""The warm engine's command inbox (both serve loops read their commands through it)."""

from __future__ import annotations

import json

from wanserve.engine.commands import SHUTDOWN, CommandInbox


def _inbox() -> tuple[CommandInbox, list[str], list[str]]:
    cancels: list[str] = []
    bad: list[str] = []
    return CommandInbox(cancels.append, bad.append), cancels, bad


def test_commands_come_out_in_order_and_a_queued_cancel_skips_its_task() -> None:
    inbox, cancels, bad = _inbox()
    for task in ("a", "b"):
        inbox.handle_line(json.dumps({"op": "run", "spec": {"task_id": task}}))
    inbox.handle_line(json.dumps({"op": "cancel", "task_id": "b"}))
    inbox.handle_line(json.dumps({"op": "shutdown"}))
    assert inbox.next()["spec"] == {"task_id": "a"}
    assert inbox.begin("a")
    inbox.end()
    assert inbox.next()["spec"] == {"task_id": "b"}
    assert not inbox.begin("b")  # cancelled while queued
    assert inbox.begin("b")  # a later run of the same task is not
    inbox.end()
    assert inbox.next() == SHUTDOWN
    assert cancels == [] and bad == []


def test_a_cancel_of_the_running_task_acts_at_once() -> None:
    inbox, cancels, _ = _inbox()
    assert inbox.begin("a")
    inbox.handle_line(json.dumps({"op": "cancel", "task_id": "a"}))
    assert cancels == ["cancel requested"]


def test_bad_lines_are_reported_and_a_stop_request_shuts_down() -> None:
    inbox, _, bad = _inbox()
    inbox.handle_line("not json")
    inbox.handle_line(json.dumps({"op": "dance"}))
    assert bad == ["bad command line: 'not json'", "unknown op 'dance'"]
    inbox.stopping.set()
    assert inbox.next() == SHUTDOWN
