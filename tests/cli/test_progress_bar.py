"""The terminal progress bar `wanserve generate` draws on a TTY."""

from __future__ import annotations

import io
import re

from rich.console import Console

from wanserve.cli.progress_bar import ProgressSink
from wanserve.domain.events import Phase, PhaseEvent, ResultEvent, StepEvent


def test_progress_sink_draws_a_bar_and_the_result() -> None:
    out = io.StringIO()
    sink = ProgressSink(Console(file=out, force_terminal=True, width=100))
    sink.emit(PhaseEvent(at=0, phase=Phase.DENOISING))
    for step in (1, 2):
        sink.emit(StepEvent(at=0, step=step, total=2, expert="high_noise"))
    sink.emit(
        ResultEvent(
            at=0,
            path="/v.mp4",
            bytes=10,
            sha256="0",
            frames=9,
            fps=16,
            duration=0.5,
            width=64,
            height=64,
        )
    )
    text = re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", out.getvalue())
    assert "denoising (high_noise)" in text and "2/2" in text
    assert "wrote /v.mp4 (64x64, 9 frames, 10 bytes)" in text
