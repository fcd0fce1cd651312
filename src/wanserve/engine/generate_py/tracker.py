"""Progress from an operator's Wan2.2 `generate.py`: its log output turned into engine events.

`generate.py` says nothing machine-readable. What it does print, and what this module reads:

- `tqdm(timesteps)` on stderr, on every rank: `' 45%|████▌     | 18/40 [01:23<01:41,  4.6s/it]'`,
  one update per carriage return (and not every step: tqdm skips updates closer than 0.1 s);
- rank 0's `logging` lines on stdout, in upstream's format `[%(asctime)s] %(levelname)s:
  %(message)s`: `'[2025-07-28 10:00:00,000] INFO: Generating video ...'`.

`ProgressTracker.feed(fragment)` takes one carriage-return- or newline-separated fragment of
either stream and returns the events it implies: phases in order (a phase is never repeated or
undone), one `step` event per newly finished step count (the highest seen wins, so the same
bar printed by several ranks counts once), and the expert switch of an A14B model, inferred from
Wan2.2's own timestep schedule (`schedule.wan_timesteps`) and the model's boundary, because
generate.py does not log it.

generate.py echoes the prompt (`Input prompt: ...`, `Generation job args: Namespace(...)`), so
a phase is entered only by an INFO line whose whole message is one of upstream's phase messages,
a log line is never read as a progress bar, and a fragment that is a line of the prompt itself
(a prompt with line breaks continues its echo on lines of its own) is not read at all.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from dataclasses import dataclass

from wanserve.domain.events import EngineEvent, ExpertSwitchEvent, Phase, PhaseEvent, StepEvent
from wanserve.domain.types import Clock
from wanserve.engine.generate_py.schedule import Expert, first_low_noise_step

__all__ = ["LogLine", "ProgressTracker", "TqdmUpdate", "parse_log_line", "parse_tqdm"]

_TQDM = re.compile(
    r"(?P<pct>\d{1,3})%\|[^|]*\|\s*(?P<n>\d+)/(?P<total>\d+)\s*"
    r"\[(?P<elapsed>[^<\]]*)<(?P<remaining>[^,\]]*),\s*(?P<rate>[^\]]*)\]"
)
_RATE = re.compile(r"^\s*(?P<value>[\d.]+)\s*(?P<unit>s/it|it/s)\s*$")
# Upstream's logging.basicConfig format, with logging's default asctime ("%Y-%m-%d %H:%M:%S,mmm").
_LOG = re.compile(
    r"^\[(?P<when>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\] "
    r"(?P<level>DEBUG|INFO|WARNING|ERROR|CRITICAL): (?P<message>.*)$"
)
# torchrun --tee / log redirection prefixes each line with the worker's role and local rank.
_RANK_PREFIX = re.compile(r"^\[(?:default|rank)\d+\]:")
_LINE_BREAK = re.compile(r"[\r\n]")

# Whole INFO messages generate.py (Wan2.2, rank 0) logs right before each phase begins.
_PHASE_MESSAGES: tuple[tuple[re.Pattern[str], Phase], ...] = (
    (re.compile(r"Creating Wan[\w-]* pipeline\."), Phase.LOADING),  # "Creating WanT2V pipeline."
    (re.compile(r"Creating WanModel from .+"), Phase.LOADING),  # wan/text2video.py and siblings
    (re.compile(r"Generating video \.\.\."), Phase.ENCODING_TEXT),  # T5 runs first in generate()
    (re.compile(r"Saving generated video to .+"), Phase.ENCODING_VIDEO),  # save_video encodes
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
    m = _LOG.match(_unprefixed(fragment))
    return LogLine(m["level"], m["message"]) if m else None


def _unprefixed(fragment: str) -> str:
    return _RANK_PREFIX.sub("", fragment).strip()


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


def _phase_of(line: LogLine) -> Phase | None:
    if line.level != "INFO":
        return None
    for pattern, phase in _PHASE_MESSAGES:
        if pattern.fullmatch(line.message):
            return phase
    return None


class ProgressTracker:
    """Turns generate.py output fragments into events; one tracker per run.

    `timesteps` and `boundary_ratio` (both or neither) let it label steps with their timestep
    and expert and emit the expert switch; without them steps carry neither. `echoed` is text
    generate.py may print back (the prompts): a fragment that is one of its lines is ignored.
    """

    def __init__(
        self,
        *,
        task_id: str | None,
        timesteps: list[float] | None = None,
        boundary_ratio: float | None = None,
        echoed: Iterable[str] = (),
        clock: Clock = time.time,
    ) -> None:
        self._task_id = task_id
        self._timesteps = timesteps
        self._boundary = boundary_ratio
        self._clock = clock
        self._echoed = {
            line.strip() for text in echoed for line in _LINE_BREAK.split(text) if line.strip()
        }
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
        if _unprefixed(fragment) in self._echoed:
            return []
        line = parse_log_line(fragment)
        if line is not None:
            phase = _phase_of(line)
            return [] if phase is None else self.enter(phase)
        update = parse_tqdm(fragment)
        return [] if update is None else self._on_tqdm(update)

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
