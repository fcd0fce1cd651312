"""How long tasks take, learned from finished ones: the history behind ETAs and routing.

A finished task's timings split into its cold start (the phases before the engine's own work:
starting, scaling_up, waiting_for_gpus, pulling_image, loading) and its run (the engine's work,
encoding_text to uploading). Runs are keyed by what decides their length (model, size, frames,
steps, pool, world size), cold starts by (model, pool, world size); the store keeps a running
mean per key (`mean += (x - mean) / min(n, WINDOW)`: the plain mean of the first samples, then an
exponential one). A run of a shape not measured yet is scaled from the measured runs of the
same model, pool and world size by its work (steps x latent frames x pixels); before any, nominal
figures per model size stand in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from wanserve.domain.events import Phase
from wanserve.domain.models import get_model
from wanserve.domain.spec import VideoSpec
from wanserve.domain.task import Task

__all__ = [
    "COLD_PHASES",
    "WINDOW",
    "WORK_PHASES",
    "Durations",
    "Sample",
    "cold_key",
    "run_key",
    "samples_of",
]

COLD_PHASES = frozenset(
    {Phase.STARTING, Phase.SCALING_UP, Phase.WAITING_FOR_GPUS, Phase.PULLING_IMAGE, Phase.LOADING}
)
WORK_PHASES = frozenset(
    {
        Phase.ENCODING_TEXT,
        Phase.DENOISING,
        Phase.DECODING,
        Phase.ENCODING_VIDEO,
        Phase.WRITING,
        Phase.UPLOADING,
    }
)
WINDOW = 8  # samples a mean is averaged over before it becomes exponential (weight 1/8)
COLD_WARM_S = 1.0  # a cold-start sample under this is a warm start: it says nothing of cold ones

# Before anything was measured: seconds per denoising step at the default size, the tail
# (decode, encode, upload) in steps, and a cold start (process start and loading).
_NOMINAL_STEP_S = {"tiny": 0.3, "ti2v-5b": 6.0, "a14b": 20.0, "i2v-a14b": 20.0}
_NOMINAL_COLD_S = {"tiny": 8.0, "ti2v-5b": 90.0, "a14b": 300.0, "i2v-a14b": 300.0}
_TAIL_STEPS = 2.0


@dataclass(frozen=True, slots=True)
class Sample:
    """One measurement for the store: `seconds` under `key`."""

    key: str
    seconds: float


def run_key(spec: VideoSpec, pool: str | None, world_size: int) -> str:
    return (
        f"run/{spec.model}/{spec.width}x{spec.height}/{spec.num_frames}f/"
        f"{spec.num_inference_steps}s/{pool or '-'}/{world_size}"
    )


def cold_key(model: str, pool: str | None, world_size: int) -> str:
    return f"cold/{model}/{pool or '-'}/{world_size}"


def samples_of(task: Task, world_size: int) -> list[Sample]:
    """What a task that completed teaches: its run, and its cold start when it had one."""
    spec, pool = task.spec, task.pool
    run = sum(task.timings.get(phase.value, 0.0) for phase in WORK_PHASES)
    samples = [Sample(run_key(spec, pool, world_size), run)] if run > 0 else []
    cold = sum(task.timings.get(phase.value, 0.0) for phase in COLD_PHASES)
    if cold >= COLD_WARM_S and task.timings.get(Phase.LOADING.value, 0.0) > 0:
        samples.append(Sample(cold_key(spec.model, pool, world_size), cold))
    return samples


class Durations:
    """Expected seconds from the stored means (`{key: mean}`), nominal figures where none."""

    def __init__(self, means: Mapping[str, float]) -> None:
        self._means = dict(means)
        # seconds per unit of work, per (model, pool, world size): the measured shapes' mean
        rates: dict[str, list[float]] = {}
        for key, seconds in self._means.items():
            parsed = _parse_run_key(key)
            if parsed is not None:
                model_pool_world, work = parsed
                rates.setdefault(model_pool_world, []).append(seconds / work)
        self._rates = {key: sum(rs) / len(rs) for key, rs in rates.items()}

    def run_s(self, spec: VideoSpec, pool: str | None, world_size: int) -> float:
        """Expected seconds of the engine's work on `spec` (cold start excluded)."""
        learned = self._means.get(run_key(spec, pool, world_size))
        if learned is not None:
            return learned
        work = _work(spec.num_inference_steps, spec.num_frames, spec.width, spec.height)
        rate = self._rates.get(f"{spec.model}/{pool or '-'}/{world_size}")
        if rate is not None:
            return rate * work
        return (spec.num_inference_steps + _TAIL_STEPS) * _size_of(spec.model, _NOMINAL_STEP_S)

    def cold_s(self, model: str, pool: str | None, world_size: int) -> float:
        """Expected seconds from an attempt's start to a loaded engine, when none is loaded."""
        learned = self._means.get(cold_key(model, pool, world_size))
        return learned if learned is not None else _size_of(model, _NOMINAL_COLD_S)

    def remaining_s(self, task: Task, now: float, world_size: int) -> float:
        """Expected seconds until a running `task` completes: from its own step rate once it
        is denoising, else its expected run (and the rest of its cold start, if loading)."""
        spec = task.spec
        steps = task.total_steps or spec.num_inference_steps
        denoised = task.timings.get(Phase.DENOISING.value, 0.0)
        if task.phase == Phase.DENOISING:
            denoised += max(0.0, now - task.phase_started_at)
        if task.step > 0 and denoised > 0:
            step_s = denoised / task.step
            return max(0, steps - task.step) * step_s + _TAIL_STEPS * step_s
        expected = self.run_s(spec, task.pool, world_size)
        if task.phase in COLD_PHASES:
            spent = sum(task.timings.get(p.value, 0.0) for p in COLD_PHASES)
            spent += max(0.0, now - task.phase_started_at)
            expected += max(0.0, self.cold_s(spec.model, task.pool, world_size) - spent)
        return expected


def _size_of(model: str, table: Mapping[str, float]) -> float:
    card = get_model(model)
    return table["tiny" if card.is_tiny else card.layout.value]


def _work(steps: int, frames: int, width: int, height: int) -> float:
    """What a run's length grows with: its steps (and the tail) x latent frames x pixels."""
    return (steps + _TAIL_STEPS) * ((frames - 1) // 4 + 1) * width * height


def _parse_run_key(key: str) -> tuple[str, float] | None:
    """("model/pool/world", work) of a `run_key`; None for any other key."""
    parts = key.split("/")
    if len(parts) != 7 or parts[0] != "run":
        return None
    _, model, size, frames, steps, pool, world = parts
    try:
        width, height = map(int, size.split("x"))
        work = _work(int(steps.removesuffix("s")), int(frames.removesuffix("f")), width, height)
    except ValueError:
        return None
    return f"{model}/{pool}/{world}", work
