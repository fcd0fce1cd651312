"""The engine's progress protocol: JSON-lines events every backend turns into task events.

The engine writes one JSON object per line (`EngineEvent.model_dump_json()`); a backend reads
them back with `parse_event(line)`. Every event carries the task id (when known), the rank that
wrote it and a unix timestamp. The terminal events are `result`, `error` and `cancelled`.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum
from typing import Annotated, Literal, TypeGuard

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

__all__ = [
    "CancelledEvent",
    "EngineEvent",
    "ErrorEvent",
    "ExitCode",
    "Expert",
    "ExpertSwitchEvent",
    "LogEvent",
    "MemoryEvent",
    "Phase",
    "PhaseEvent",
    "ReadyEvent",
    "ResultEvent",
    "StepEvent",
    "TerminalEvent",
    "VideoFacts",
    "is_terminal",
    "parse_event",
]


class Phase(StrEnum):
    """What a task is doing, in the order a person sees them (service phases, then engine's)."""

    QUEUED = "queued"
    STARTING = "starting"  # backend is launching processes / pods
    SCALING_UP = "scaling_up"  # a pool is starting an engine (replica) for this task's model
    WAITING_FOR_GPUS = "waiting_for_gpus"  # scheduled but no capacity yet (pending pods, Kueue)
    PULLING_IMAGE = "pulling_image"
    LOADING = "loading"  # loading the model (engine)
    ENCODING_TEXT = "encoding_text"
    DENOISING = "denoising"
    DECODING = "decoding"  # VAE decode
    ENCODING_VIDEO = "encoding_video"  # MP4 and poster
    WRITING = "writing"  # writing the output files
    UPLOADING = "uploading"  # artifact store upload (service)
    DONE = "done"


Expert = Literal["high_noise", "low_noise"]  # the two Wan2.2 A14B experts


class ExitCode(IntEnum):
    """Process exit codes of the engine entry points."""

    OK = 0
    FAILED = 1
    INVALID = 2  # the spec or the flags are invalid; retrying cannot help
    CANCELLED = 3  # SIGTERM, SIGINT or a cancel request stopped the run
    OOM = 4  # out of memory on some rank


class _Event(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    task_id: str | None = None
    rank: int = 0
    at: float  # unix time, seconds


class PhaseEvent(_Event):
    type: Literal["phase"] = "phase"
    phase: Phase


class StepEvent(_Event):
    type: Literal["step"] = "step"
    step: int  # 1-based: the step just finished
    total: int
    expert: Expert | None = None
    timestep: float | None = None


class ExpertSwitchEvent(_Event):
    type: Literal["expert_switch"] = "expert_switch"
    step: int  # 1-based index of the first step the new expert runs
    timestep: float
    expert: Expert


class MemoryEvent(_Event):
    type: Literal["memory"] = "memory"
    device: str
    peak_bytes: int


class LogEvent(_Event):
    type: Literal["log"] = "log"
    level: Literal["debug", "info", "warning", "error"] = "info"
    message: str


class VideoFacts(BaseModel):
    """What the engine made: the MP4's size and digest, and its frames, rate and size."""

    model_config = ConfigDict(frozen=True)

    bytes: int
    sha256: str
    frames: int
    fps: int
    duration: float
    width: int
    height: int

    def facts(self) -> dict[str, object]:
        """These fields alone (of a subclass that adds more)."""
        return self.model_dump(include=set(VideoFacts.model_fields))


class ResultEvent(_Event, VideoFacts):
    type: Literal["result"] = "result"
    path: str  # the MP4
    poster: str | None = None  # a JPEG of the first frame


class ErrorEvent(_Event):
    type: Literal["error"] = "error"
    code: str  # "oom", "invalid_spec", "engine_error", "peer_failed", ...
    message: str
    retryable: bool = False


class CancelledEvent(_Event):
    type: Literal["cancelled"] = "cancelled"
    reason: str = "cancelled"


class ReadyEvent(_Event):
    """A warm engine loaded its model and waits for specs (`python -m wanserve.engine serve`)."""

    type: Literal["ready"] = "ready"
    model: str
    world_size: int


EngineEvent = Annotated[
    PhaseEvent
    | StepEvent
    | ExpertSwitchEvent
    | MemoryEvent
    | LogEvent
    | ResultEvent
    | ErrorEvent
    | CancelledEvent
    | ReadyEvent,
    Field(discriminator="type"),
]

TerminalEvent = ResultEvent | ErrorEvent | CancelledEvent
_TERMINAL = (ResultEvent, ErrorEvent, CancelledEvent)


def is_terminal(event: EngineEvent) -> TypeGuard[TerminalEvent]:
    """Whether `event` ends a run: a result, an error or a cancellation."""
    return isinstance(event, _TERMINAL)


_ADAPTER: TypeAdapter[EngineEvent] = TypeAdapter(EngineEvent)


def parse_event(line: str | bytes) -> EngineEvent:
    """One JSON line back into its event; raises pydantic.ValidationError on anything else."""
    return _ADAPTER.validate_json(line)
