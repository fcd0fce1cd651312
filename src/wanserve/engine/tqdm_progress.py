"""Progress from an operator's Wan2.2 `generate.py`: its log output turned into engine events.

`generate.py` says nothing machine-readable. What it does print, and what this module reads:

- `tqdm(timesteps)` on stderr, on every rank: `' 45%|████▌     | 18/40 [01:23<01:41,  4.6s/it]'`,
  one update per carriage return (and not every step: tqdm skips updates closer than 0.1 s);
- rank 0's `logging` lines on stdout, `'[2025-07-28 10:00:00,000] INFO: Generating video ...'`.

`ProgressTracker.feed(fragment)` takes one carriage-return- or newline-separated fragment of
either stream and returns the events it implies: phases in order (a phase is never repeated or
undone), one `step` event per newly finished step count (the highest seen wins, so the same
bar printed by several ranks counts once), and the expert switch of an A14B model, inferred from
Wan2.2's own timestep schedule (`wan_timesteps`) and the model's boundary, because generate.py
does not log it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from wanserve.domain.events import EngineEvent, ExpertSwitchEvent, Phase, PhaseEvent, StepEvent

__all__ = [
    "LogLine",
    "ProgressTracker",
    "TqdmUpdate",
    "first_low_noise_step",
    "parse_log_line",
    "parse_tqdm",
    "wan_timesteps",
]

Expert = Literal["high_noise", "low_noise"]
Solver = Literal["unipc", "dpm++"]

_TQDM = re.compile(
    r"(?P<pct>\d{1,3})%\|[^|]*\|\s*(?P<n>\d+)/(?P<total>\d+)\s*"
    r"\[(?P<elapsed>[^<\]]*)<(?P<remaining>[^,\]]*),\s*(?P<rate>[^\]]*)\]"
)
_RATE = re.compile(r"^\s*(?P<value>[\d.]+)\s*(?P<unit>s/it|it/s)\s*$")
_LOG = re.compile(
    r"^\[(?P<when>[^\]]+)\]\s+(?P<level>DEBUG|INFO|WARNING|ERROR|CRITICAL):\s?(?P<message>.*)$"
)
# torchrun --tee / log redirection prefixes each line with the worker's role and local rank.
_RANK_PREFIX = re.compile(r"^\[(?:default|rank)\d+\]:")

# Logged by generate.py (Wan2.2, rank 0) right before each phase begins; first match wins.
_PHASE_MARKERS: tuple[tuple[str, Phase], ...] = (
    ("Creating Wan", Phase.LOADING),  # "Creating WanT2V pipeline.", "Creating WanModel from ..."
    ("Generating video", Phase.ENCODING_TEXT),  # T5 runs first inside generate()
    ("Saving generated video to", Phase.ENCODING_VIDEO),  # save_video encodes the MP4
)
_PHASE_ORDER = tuple(Phase)


@dataclass(frozen=True, slots=True)
class TqdmUpdate:
    """One tqdm progress update: `n` of `total` done, times in seconds when tqdm knew them."""

    n: int
    total: int
    elapsed_s: float | None
    remaining_s: float | None
    seconds_per_step: float | None


@dataclass(frozen=True, slots=True)
class LogLine:
    level: str
    message: str


def parse_tqdm(fragment: str) -> TqdmUpdate | None:
    """The last tqdm update in `fragment`, or None when it holds none."""
    matches = list(_TQDM.finditer(fragment))
    if not matches:
        return None
    m = matches[-1]
    return TqdmUpdate(
        n=int(m["n"]),
        total=int(m["total"]),
        elapsed_s=_parse_clock(m["elapsed"]),
        remaining_s=_parse_clock(m["remaining"]),
        seconds_per_step=_parse_rate(m["rate"]),
    )


def parse_log_line(fragment: str) -> LogLine | None:
    """A `[time] LEVEL: message` line of generate.py's logging format, or None."""
    m = _LOG.match(_RANK_PREFIX.sub("", fragment).strip())
    return LogLine(m["level"], m["message"]) if m else None


def _parse_clock(text: str) -> float | None:
    """tqdm's '01:23' or '1:01:23' in seconds; None for '?'."""
    parts = text.strip().split(":")
    if not all(p.isdigit() for p in parts) or len(parts) > 3:
        return None
    seconds = 0.0
    for part in parts:
        seconds = seconds * 60 + int(part)
    return seconds


def _parse_rate(text: str) -> float | None:
    m = _RATE.match(text)
    if m is None or float(m["value"]) == 0:
        return None
    value = float(m["value"])
    return value if m["unit"] == "s/it" else 1.0 / value


def wan_timesteps(
    steps: int, shift: float, solver: Solver = "unipc", num_train_timesteps: int = 1000
) -> list[float]:
    """The timesteps Wan2.2's sampler visits, as its own schedulers compute them.

    unipc (`FlowUniPCMultistepScheduler.set_timesteps`): sigmas from sigma_max = 0.999 (the
    float32 value of its training schedule) to 0, shifted, times 1000, truncated to integers.
    dpm++ (`get_sampling_sigmas`): sigmas from 1 to 0, shifted, times 1000.
    """
    if steps < 1:
        raise ValueError(f"steps={steps} must be at least 1")
    # compat: Wan keeps the training sigmas in float32; 0.999 in float32 is this value.
    start = 0.9990000128746033 if solver == "unipc" else 1.0
    step = (0.0 - start) / steps  # as numpy.linspace computes it, so truncation agrees
    sigmas = [i * step + start for i in range(steps)]
    shifted = [shift * s / (1 + (shift - 1) * s) for s in sigmas]
    if solver == "unipc":
        return [float(int(s * num_train_timesteps)) for s in shifted]
    return [s * num_train_timesteps for s in shifted]


def first_low_noise_step(
    timesteps: list[float], boundary_ratio: float, num_train_timesteps: int = 1000
) -> int | None:
    """1-based index of the first step the low-noise expert runs (t < boundary), or None."""
    boundary = boundary_ratio * num_train_timesteps
    for index, t in enumerate(timesteps, start=1):
        if t < boundary:
            return index
    return None


class ProgressTracker:
    """Turns generate.py output fragments into events; one tracker per run.

    `timesteps` and `boundary_ratio` (both or neither) let it label steps with their timestep
    and expert and emit the expert switch; without them steps carry neither.
    """

    def __init__(
        self,
        *,
        task_id: str | None,
        timesteps: list[float] | None = None,
        boundary_ratio: float | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._task_id = task_id
        self._timesteps = timesteps
        self._boundary = boundary_ratio
        self._clock = clock
        switch = (
            first_low_noise_step(timesteps, boundary_ratio)
            if timesteps is not None and boundary_ratio is not None
            else None
        )
        self._switch_step = switch if switch != 1 else None  # low-noise from the start: no switch
        self._switched = False
        self.phase: Phase | None = None
        self.step = 0
        self.total: int | None = None
        self.last_update: TqdmUpdate | None = None

    def feed(self, fragment: str) -> list[EngineEvent]:
        """The events one output fragment (a line, or one `\\r`-separated redraw) implies."""
        update = parse_tqdm(fragment)
        if update is not None:
            return self._on_tqdm(update)
        line = parse_log_line(fragment)
        if line is None:
            return []
        for marker, phase in _PHASE_MARKERS:
            if marker in line.message:
                return self.enter(phase)
        return []

    def enter(self, phase: Phase) -> list[EngineEvent]:
        """A phase event when `phase` comes after the current one; nothing otherwise."""
        if self.phase is not None and _PHASE_ORDER.index(phase) <= _PHASE_ORDER.index(self.phase):
            return []
        self.phase = phase
        return [PhaseEvent(task_id=self._task_id, at=self._clock(), phase=phase)]

    def _on_tqdm(self, update: TqdmUpdate) -> list[EngineEvent]:
        events = self.enter(Phase.DENOISING)
        if update.n <= self.step or update.n > update.total:
            return events
        self.step, self.total, self.last_update = update.n, update.total, update
        events.append(
            StepEvent(
                task_id=self._task_id,
                at=self._clock(),
                step=update.n,
                total=update.total,
                expert=self._expert(update.n),
                timestep=self._timestep(update.n),
            )
        )
        events.extend(self._maybe_switch(update.n))
        if update.n == update.total:
            events.extend(self.enter(Phase.DECODING))  # rank 0 decodes right after the loop
        return events

    def _maybe_switch(self, finished: int) -> list[EngineEvent]:
        # The new expert runs from step `switch`, which starts as soon as step `switch - 1` ends.
        switch = self._switch_step
        if self._switched or switch is None or finished < switch - 1:
            return []
        self._switched = True
        return [
            ExpertSwitchEvent(
                task_id=self._task_id,
                at=self._clock(),
                step=switch,
                timestep=self._timestep(switch) or 0.0,
                expert="low_noise",
            )
        ]

    def _timestep(self, step: int) -> float | None:
        if self._timesteps is None or not 1 <= step <= len(self._timesteps):
            return None
        return self._timesteps[step - 1]

    def _expert(self, step: int) -> Expert | None:
        t = self._timestep(step)
        if t is None or self._boundary is None:
            return None
        return "high_noise" if t >= self._boundary * 1000 else "low_noise"
