"""The generate.py output parser, fed with what tqdm and upstream's logging print."""

from __future__ import annotations

import io
import re
from typing import Any

import pytest
from tqdm import tqdm

from wanserve.domain.events import ExpertSwitchEvent, Phase, PhaseEvent, StepEvent
from wanserve.engine.generate_py.schedule import wan_timesteps
from wanserve.engine.generate_py.tracker import ProgressTracker, parse_log_line, parse_tqdm


def _tqdm_output(total: int, **kwargs: Any) -> list[str]:
    """What `tqdm(range(total))` writes to its stream, split where a reader splits it."""
    stream = io.StringIO()
    for _ in tqdm(range(total), file=stream, mininterval=0, miniters=1, **kwargs):
        pass
    return [part for part in re.split(r"[\r\n]", stream.getvalue()) if part.strip()]


def _clock() -> float:
    return 1000.0


def test_parse_tqdm_reads_counts_times_and_rate_from_tqdms_own_format() -> None:
    update = parse_tqdm(tqdm.format_meter(n=18, total=40, elapsed=83.0))
    assert update is not None
    assert (update.n, update.total, update.elapsed_s, update.remaining_s) == (18, 40, 83.0, 101.0)
    assert update.seconds_per_step == pytest.approx(83.0 / 18, abs=0.01)


def test_parse_tqdm_reads_hours_and_it_per_second() -> None:
    slow = parse_tqdm(tqdm.format_meter(n=3, total=50, elapsed=3725.0))
    fast = parse_tqdm(tqdm.format_meter(n=30, total=50, elapsed=2.0))
    assert slow is not None and slow.elapsed_s == 3725.0
    assert slow.remaining_s == pytest.approx(47 * 3725 / 3, abs=1)
    assert fast is not None and fast.seconds_per_step == pytest.approx(2.0 / 30, rel=0.01)


def test_parse_tqdm_start_line_has_no_times_and_other_lines_are_none() -> None:
    start = parse_tqdm(tqdm.format_meter(n=0, total=50, elapsed=0))
    assert start is not None and (start.n, start.remaining_s, start.seconds_per_step) == (
        0,
        None,
        None,
    )
    assert parse_tqdm("[2025-07-28 10:00:00,000] INFO: Generating video ...") is None
    assert parse_tqdm(" 45%|████▌     | 18/40 [01:23<01:41,  4.6s/it]") is not None


def test_parse_log_line_reads_wan_logging_format_with_or_without_torchrun_prefix() -> None:
    line = parse_log_line("[2025-07-28 10:00:00,123] INFO: Creating WanT2V pipeline.")
    assert line is not None and (line.level, line.message) == ("INFO", "Creating WanT2V pipeline.")
    prefixed = parse_log_line("[default0]:[2025-07-28 10:00:00,123] WARNING: low memory")
    assert prefixed is not None and prefixed.level == "WARNING"
    assert parse_log_line("Traceback (most recent call last):") is None
    assert parse_log_line("[default0]:[2025-07-28 10:00:00,123] INFO:Generating video ...") is None


def test_tracker_turns_real_tqdm_output_into_every_step_and_one_switch() -> None:
    timesteps = wan_timesteps(40, 12.0)
    tracker = ProgressTracker(task_id="t1", timesteps=timesteps, boundary_ratio=0.875, clock=_clock)
    events = [e for fragment in _tqdm_output(40) for e in tracker.feed(fragment)]
    steps = [e for e in events if isinstance(e, StepEvent)]
    assert [s.step for s in steps] == list(range(1, 41))
    assert {s.total for s in steps} == {40} and {s.task_id for s in steps} == {"t1"}
    assert [s.expert for s in steps] == ["high_noise"] * 26 + ["low_noise"] * 14
    assert [s.timestep for s in steps] == timesteps
    switches = [e for e in events if isinstance(e, ExpertSwitchEvent)]
    assert [(s.step, s.timestep, s.expert) for s in switches] == [(27, timesteps[26], "low_noise")]
    assert events.index(switches[0]) == events.index(steps[25]) + 1  # right after step 26 ends
    phases = [e.phase for e in events if isinstance(e, PhaseEvent)]
    assert phases == [Phase.DENOISING, Phase.DECODING]


def test_tracker_counts_a_bar_drawn_by_two_ranks_once() -> None:
    tracker = ProgressTracker(task_id=None, clock=_clock)
    rank0, rank1 = _tqdm_output(6), _tqdm_output(6)
    interleaved = [f for pair in zip(rank0, rank1, strict=True) for f in pair]
    steps = [e.step for f in interleaved for e in tracker.feed(f) if isinstance(e, StepEvent)]
    assert steps == [1, 2, 3, 4, 5, 6]


def test_tracker_reports_skipped_updates_as_they_are_and_still_switches() -> None:
    timesteps = wan_timesteps(40, 12.0)
    tracker = ProgressTracker(task_id=None, timesteps=timesteps, boundary_ratio=0.875)
    fragments = [tqdm.format_meter(n=n, total=40, elapsed=n * 4.0) for n in (0, 10, 30, 40)]
    events = [e for f in fragments for e in tracker.feed(f)]
    assert [e.step for e in events if isinstance(e, StepEvent)] == [10, 30, 40]
    assert [e.step for e in events if isinstance(e, ExpertSwitchEvent)] == [27]


def test_tracker_phases_follow_generate_py_logging_and_never_go_back() -> None:
    tracker = ProgressTracker(task_id=None, clock=_clock)
    lines = [
        "[2025-07-28 10:00:00,000] INFO: Generation job args: Namespace(task='t2v-A14B')",
        "[2025-07-28 10:00:00,000] INFO: Creating WanT2V pipeline.",
        "[2025-07-28 10:00:01,000] INFO: Creating WanModel from /ckpt",
        "[2025-07-28 10:00:09,000] INFO: Generating video ...",
        tqdm.format_meter(n=0, total=2, elapsed=0),
        tqdm.format_meter(n=2, total=2, elapsed=1),
        "[2025-07-28 10:01:00,000] INFO: Saving generated video to /out/video.mp4",
        "[2025-07-28 10:01:00,000] INFO: Creating WanModel from /ckpt",
        "[2025-07-28 10:01:02,000] INFO: Finished.",
    ]
    phases = [e.phase for line in lines for e in tracker.feed(line) if isinstance(e, PhaseEvent)]
    assert phases == [
        Phase.LOADING,
        Phase.ENCODING_TEXT,
        Phase.DENOISING,
        Phase.DECODING,
        Phase.ENCODING_VIDEO,
    ]


def test_tracker_without_a_boundary_labels_no_expert() -> None:
    tracker = ProgressTracker(task_id=None, timesteps=wan_timesteps(4, 5.0), boundary_ratio=None)
    events = [e for f in _tqdm_output(4) for e in tracker.feed(f)]
    steps = [e for e in events if isinstance(e, StepEvent)]
    assert [s.expert for s in steps] == [None] * 4
    assert not any(isinstance(e, ExpertSwitchEvent) for e in events)


def _phases(tracker: ProgressTracker, lines: list[str]) -> list[Phase]:
    return [e.phase for line in lines for e in tracker.feed(line) if isinstance(e, PhaseEvent)]


def test_tracker_enters_a_phase_only_on_upstreams_whole_message() -> None:
    prompt = "a robot Saving generated video to a tape"
    lines = [
        f"[2025-07-28 10:00:00,000] INFO: Generation job args: Namespace(prompt='{prompt}')",
        f"[2025-07-28 10:00:00,000] INFO: Input prompt: {prompt}",
        "[2025-07-28 10:00:00,000] INFO: Input prompt: Generating video ...",
        "[2025-07-28 10:00:00,000] INFO: Extended prompt: Creating WanT2V pipeline.",
        "[2025-07-28 10:00:00,000] WARNING: Saving generated video to /tmp/x.mp4",
        "[2025-07-28 10:00:00,000] INFO: Saving generated video to",
        "Saving generated video to /tmp/x.mp4",
    ]
    assert _phases(ProgressTracker(task_id=None, clock=_clock), lines) == []


def test_tracker_knows_every_pipeline_upstream_creates() -> None:
    for name in ("WanT2V", "WanI2V", "WanTI2V", "WanS2V", "Wan-Animate"):
        tracker = ProgressTracker(task_id=None, clock=_clock)
        line = f"[2025-07-28 10:00:00,000] INFO: Creating {name} pipeline."
        assert _phases(tracker, [line]) == [Phase.LOADING]


def test_a_log_line_is_never_read_as_a_progress_bar() -> None:
    tracker = ProgressTracker(task_id=None, clock=_clock)
    bar = tqdm.format_meter(n=4, total=8, elapsed=4.0)
    assert (
        tracker.feed(f"[2025-07-28 10:00:00,000] INFO: Input prompt: a screen showing {bar}") == []
    )
    assert tracker.step == 0


def test_tracker_ignores_the_lines_of_a_multi_line_prompt() -> None:
    """A prompt with line breaks continues its `Input prompt:` echo on lines of its own."""
    forged = "[2025-07-28 10:00:00,000] INFO: Saving generated video to a tape"
    bar = tqdm.format_meter(n=4, total=8, elapsed=4.0)
    prompt = f"a robot\n{forged}\r{bar}"
    tracker = ProgressTracker(task_id=None, echoed=[prompt, ""], clock=_clock)
    lines = ["[2025-07-28 10:00:00,000] INFO: Input prompt: a robot", forged, bar]
    assert [e for line in lines for e in tracker.feed(line)] == []
    real = "[2025-07-28 10:01:00,000] INFO: Saving generated video to /out/video.mp4"
    assert _phases(tracker, [f"[default0]:{forged}", real]) == [Phase.ENCODING_VIDEO]
