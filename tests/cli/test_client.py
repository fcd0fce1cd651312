"""The CLI client's pieces that need no server: SSE parsing and request bodies."""

from __future__ import annotations

from wanserve.cli.follow import create_fields, read_sse


def test_sse_events_are_parsed_with_ids_types_and_json() -> None:
    lines = [
        "retry: 1000",
        "",
        ": keep-alive",
        "",
        "id: 1",
        "event: created",
        'data: {"type": "created"}',
        "",
        "id: 2",
        "event: step",
        'data: {"data": {"step": 1,',
        'data: "total": 4}}',
        "",
    ]
    events = list(read_sse(iter(lines)))
    assert [(e.id, e.type) for e in events] == [(1, "created"), (2, "step")]
    assert events[1].data == {"data": {"step": 1, "total": 4}}


def test_create_fields_names_wan_parameters_and_drops_unset_ones() -> None:
    body = create_fields("a kite", model=None, size="32x32", frames=5, steps=2, seed=None)
    assert body == {"prompt": "a kite", "size": "32x32", "num_frames": 5, "num_inference_steps": 2}
