"""Journal entries as their log rows store them (what SSE clients read)."""

from __future__ import annotations

from tests.domain.tasks import BOOM, RESULT
from wanserve.domain.events import Phase
from wanserve.domain.journal import (
    CreatedEntry,
    ErrorEntry,
    ExpiredEntry,
    PhaseEntry,
    ResultEntry,
    StateEntry,
    StepEntry,
)
from wanserve.domain.task import TaskState


def test_an_entry_stores_its_fields_but_type_and_leaves_unset_ones_out() -> None:
    assert CreatedEntry(state=TaskState.QUEUED).data() == {"state": "queued"}
    running = StateEntry(state=TaskState.IN_PROGRESS, attempt=2, backend="local")
    assert (running.type, running.data()) == (
        "state",
        {"state": "in_progress", "attempt": 2, "backend": "local"},
    )
    retry = StateEntry(state=TaskState.QUEUED, attempt=1, error=BOOM, retry_in_s=2.0)
    assert retry.data() == {
        "state": "queued",
        "attempt": 1,
        "error": {"code": "engine_error", "message": "boom", "retryable": True},
        "retry_in_s": 2.0,
    }
    assert PhaseEntry(phase=Phase.LOADING).data() == {"phase": "loading"}
    assert StepEntry(step=1, total=4).data() == {"step": 1, "total": 4}


def test_result_and_error_entries_are_flat() -> None:
    assert ResultEntry(**RESULT.model_dump()).data() == RESULT.model_dump(exclude_none=True)
    error = ErrorEntry(**BOOM.model_dump(), traceback="Traceback")
    assert error.type == "error" and error.data() == BOOM.model_dump() | {"traceback": "Traceback"}
    assert ExpiredEntry(expires_at=None, files_deleted=0).data() == {"files_deleted": 0}
