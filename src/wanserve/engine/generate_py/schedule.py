"""Wan2.2's own timestep schedule, so the runner can label steps generate.py does not label.

generate.py logs neither the timestep of a step nor which A14B expert ran it. `wan_timesteps`
computes the timesteps Wan2.2's sampler visits, exactly as its schedulers do, and
`first_low_noise_step` finds where a model's boundary hands over to the low-noise expert.
"""

from __future__ import annotations

from typing import Literal

__all__ = ["Expert", "Solver", "first_low_noise_step", "wan_timesteps"]

Expert = Literal["high_noise", "low_noise"]
Solver = Literal["unipc", "dpm++"]


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
