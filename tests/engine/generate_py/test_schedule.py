"""Wan2.2's timestep schedule, as the runner computes it (the stand-in checks it against numpy)."""

from __future__ import annotations

import pytest

from wanserve.engine.generate_py.schedule import first_low_noise_step, wan_timesteps


def test_wan_timesteps_follow_wans_unipc_schedule() -> None:
    steps = wan_timesteps(40, 12.0)
    assert len(steps) == 40 and steps[0] == 999.0
    assert steps == sorted(steps, reverse=True)
    assert all(t == int(t) for t in steps)  # Wan casts to int64
    # t2v-A14B defaults (40 steps, shift 12, boundary 0.875): the low-noise expert from step 27.
    assert first_low_noise_step(steps, 0.875) == 27
    assert steps[25] >= 875 > steps[26]


def test_wan_timesteps_rejects_zero_steps() -> None:
    with pytest.raises(ValueError, match="steps=0"):
        wan_timesteps(0, 5.0)
