"""The explicit Wan2.2 loop in one process: expert switch, checkpoint config, image, checks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from tests.engine.conftest import make_spec
from wanserve.domain.errors import InvalidRequest
from wanserve.domain.spec import VideoSpec
from wanserve.engine.checks import check_spec_fits
from wanserve.engine.loading import inspect_checkpoint, load_components
from wanserve.engine.parallel import ParallelPlan, check_checkpoint_fits
from wanserve.engine.pipelines.wan import WanVideoPipeline


def _pipeline(path: Path) -> WanVideoPipeline:
    return WanVideoPipeline(
        load_components(path, torch.float32, torch.float32), torch.device("cpu")
    )


def _run(
    pipe: WanVideoPipeline, steps: int, **kwargs: Any
) -> tuple[Any, list[tuple[int, float, str]]]:
    seen: list[tuple[int, float, str]] = []
    args: dict[str, Any] = {
        "prompt": "a fox",
        "negative_prompt": "",
        "width": 64,
        "height": 64,
        "num_frames": 5,
        "num_inference_steps": steps,
        "shift": 3.0,
        "guidance_scale": 4.0,
        "guidance_scale_2": 3.0,
        "seed": 3,
    }
    args.update(kwargs)
    latents = pipe(**args, callback_on_step_end=lambda i, t, e: seen.append((i, t, e)))
    return latents, seen


@pytest.fixture(scope="module")
def a14b(tiny_a14b: Path) -> WanVideoPipeline:
    return _pipeline(tiny_a14b)


def test_expert_switches_at_the_first_step_below_the_boundary(a14b: WanVideoPipeline) -> None:
    _, seen = _run(a14b, steps=10)
    timesteps = [t for _, t, _ in seen]
    assert timesteps == sorted(timesteps, reverse=True) and len(seen) == 10
    first_low = next(i for i, t in enumerate(timesteps) if t < 0.875 * 1000)
    assert 0 < first_low < 10  # the run uses both experts
    assert [e for _, _, e in seen] == ["high_noise"] * first_low + ["low_noise"] * (10 - first_low)


def test_the_checkpoint_boundary_ratio_wins(tiny_a14b: Path, tmp_path: Path) -> None:
    path = shutil.copytree(tiny_a14b, tmp_path / "late-switch")
    index = json.loads((path / "model_index.json").read_text())
    index["boundary_ratio"] = 0.5
    (path / "model_index.json").write_text(json.dumps(index))
    _, seen = _run(_pipeline(path), steps=10)
    assert [e for _, t, e in seen] == [
        "high_noise" if t >= 500 else "low_noise" for _, t, _ in seen
    ]
    assert sum(e == "high_noise" for _, _, e in seen) > 2  # later than the 0.875 switch


def test_the_same_seed_gives_the_same_latents_and_another_seed_differs(
    a14b: WanVideoPipeline,
) -> None:
    first, _ = _run(a14b, steps=2)
    again, _ = _run(a14b, steps=2)
    other, _ = _run(a14b, steps=2, seed=4)
    assert torch.equal(first, again)
    assert not torch.allclose(first, other)


def test_interrupt_stops_after_the_current_step(a14b: WanVideoPipeline) -> None:
    seen: list[int] = []

    def stop_at_two(i: int, t: float, e: str) -> None:
        seen.append(i)
        if i == 1:
            a14b.request_interrupt()

    result = a14b(
        prompt="a fox",
        negative_prompt="",
        width=64,
        height=64,
        num_frames=5,
        num_inference_steps=6,
        shift=3.0,
        guidance_scale=4.0,
        guidance_scale_2=3.0,
        seed=1,
        callback_on_step_end=stop_at_two,
    )
    assert result is None and seen == [0, 1]


def test_ti2v_image_to_video_conditions_on_the_image(tiny_ti2v: Path) -> None:
    pipe = _pipeline(tiny_ti2v)
    image = Image.fromarray(np.full((64, 64, 3), (230, 30, 30), dtype=np.uint8))
    common: dict[str, Any] = {
        "prompt": "a fox",
        "negative_prompt": "",
        "width": 64,
        "height": 64,
        "num_frames": 5,
        "num_inference_steps": 2,
        "shift": 5.0,
        "guidance_scale": 5.0,
        "guidance_scale_2": None,
        "seed": 2,
    }
    latents_with, latents_without = pipe(**common, image=image), pipe(**common)
    assert latents_with is not None and latents_without is not None
    with_image, without = pipe.decode(latents_with), pipe.decode(latents_without)
    assert with_image.shape == without.shape == (5, 64, 64, 3)
    assert not np.allclose(with_image[0], without[0])


def _spec(tmp_path: Path, checkpoint: Path, **changes: Any) -> VideoSpec:
    return VideoSpec.model_validate(make_spec(checkpoint, tmp_path, **changes))


def test_engine_checks_name_the_field_value_and_rule(tiny_a14b: Path, tmp_path: Path) -> None:
    info = inspect_checkpoint(tiny_a14b)
    components = load_components(tiny_a14b, torch.float32, torch.float32)
    with pytest.raises(InvalidRequest) as heads:
        check_checkpoint_fits(ParallelPlan(ulysses=4), info)
    assert (heads.value.field, heads.value.value) == ("ulysses", 4)
    assert "2 attention heads" in heads.value.rule
    odd = _spec(tmp_path, tiny_a14b, width=48, height=48)  # 3 x 3 x 3 = 27 tokens
    with pytest.raises(InvalidRequest) as seq:
        check_spec_fits(odd, info, components, ParallelPlan(ulysses=2))
    assert seq.value.field == "size" and "27 tokens" in seq.value.rule
    check_spec_fits(odd, info, components, ParallelPlan())  # fine without Ulysses
    with pytest.raises(InvalidRequest, match="width=40"):
        check_spec_fits(_spec(tmp_path, tiny_a14b, width=40), info, components, ParallelPlan())
    with pytest.raises(InvalidRequest, match="text-to-video only"):
        check_spec_fits(
            _spec(tmp_path, tiny_a14b, task="i2v", image="x.png"), info, components, ParallelPlan()
        )


def test_the_prompt_changes_the_video(a14b: WanVideoPipeline) -> None:
    fox, _ = _run(a14b, steps=2, prompt="a red fox runs through snow")
    cat, _ = _run(a14b, steps=2, prompt="a black cat sleeps on a sofa")
    assert not torch.allclose(fox, cat)


def _diffusers_frames(path: Path, image: Any, embeds: Any, **call: Any) -> Any:
    """The same video from diffusers' own pipeline class (what model_index.json names)."""
    import diffusers

    index = json.loads((path / "model_index.json").read_text())
    pipe = getattr(diffusers, index["_class_name"]).from_pretrained(str(path))
    pipe.scheduler = diffusers.UniPCMultistepScheduler.from_config(  # type: ignore[no-untyped-call]
        pipe.scheduler.config, flow_shift=call.pop("shift")
    )
    if image is not None:
        call["image"] = image
    generator = torch.Generator().manual_seed(call.pop("seed"))
    # compat: diffusers cleans prompts with ftfy, which wanserve does not install; both sides
    # get the engine's text embeddings (its encode_prompt is copied from diffusers').
    return pipe(
        prompt_embeds=embeds[0],
        negative_prompt_embeds=embeds[1],
        generator=generator,
        output_type="np",
        **call,
    ).frames[0]


@pytest.mark.parametrize("layout", ["a14b", "i2v-a14b", "ti2v-5b"])
def test_the_engine_gives_diffusers_video(
    layout: str, tiny_a14b: Path, tiny_i2v: Path, tiny_ti2v: Path, input_image: Path
) -> None:
    path = {"a14b": tiny_a14b, "i2v-a14b": tiny_i2v, "ti2v-5b": tiny_ti2v}[layout]
    pipe = _pipeline(path)
    image = Image.open(input_image).convert("RGB") if layout == "i2v-a14b" else None
    two_experts = layout != "ti2v-5b"
    call: dict[str, Any] = {
        "height": 64,
        "width": 64,
        "num_frames": 9,
        "num_inference_steps": 4,
        "guidance_scale": 4.0,
        "guidance_scale_2": 3.0 if two_experts else None,
    }
    prompt, negative = "a red fox runs through snow", "blurry"
    latents = pipe(prompt=prompt, negative_prompt=negative, shift=5.0, seed=7, image=image, **call)
    assert latents is not None
    ours = pipe.decode(latents)
    embeds = (pipe.encode_prompt(prompt), pipe.encode_prompt(negative))
    theirs = _diffusers_frames(path, image, embeds, shift=5.0, seed=7, **call)
    assert ours.shape == theirs.shape == (9, 64, 64, 3)
    assert np.abs(ours - theirs).max() <= 1e-4
    assert float(ours.std()) > 0.01
