"""LoRA adapters on the tiny A14B experts: tiny random adapters in diffusers' format.

The video changes with an adapter and comes back exactly without it; it equals diffusers'
pipeline with the same adapter merged into the weights (and diffusers' own `load_lora_weights`
+ `set_adapters`, through peft); a warm engine reads each adapter once and switches per
task; FSDP + Ulysses on 2 ranks gives the one-rank adapted video; a card's defaults apply.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from tests.engine.conftest import run_engine
from tests.engine.lora_files import write_lora
from tests.engine.test_pipeline import _diffusers_frames, _pipeline
from tests.engine.test_serve import Served
from wanserve.domain.errors import InvalidRequest
from wanserve.domain.spec import LoraRef
from wanserve.engine.loras import LoraLibrary, applied, check_loras
from wanserve.engine.pipelines.wan import WanVideoPipeline

CALL: dict[str, Any] = {
    "height": 64,
    "width": 64,
    "num_frames": 5,
    "num_inference_steps": 3,
    "guidance_scale": 4.0,
    "guidance_scale_2": 3.0,
}


@pytest.fixture(scope="module")
def loras(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("loras")
    write_lora(root, "detail")
    write_lora(root, "fast", seed=1, num_inference_steps=2, guidance_scale=1.0)
    write_lora(root, "late", experts=("low_noise",), seed=2)
    return root


@pytest.fixture(scope="module")
def a14b(tiny_a14b: Path) -> WanVideoPipeline:
    return _pipeline(tiny_a14b)


def _frames(pipe: WanVideoPipeline, **changes: Any) -> Any:
    latents = pipe(prompt="a fox", negative_prompt="", shift=3.0, seed=3, **{**CALL, **changes})
    assert latents is not None
    return pipe.decode(latents)


def test_an_adapter_changes_the_video_and_without_it_the_base_comes_back(
    a14b: WanVideoPipeline, loras: Path
) -> None:
    library = LoraLibrary(loras, torch.device("cpu"), torch.float32)
    base = _frames(a14b)
    with applied(a14b.components, library, (LoraRef(name="detail"),)):
        adapted = _frames(a14b)
    with applied(a14b.components, library, (LoraRef(name="detail", scale=0.5),)):
        half = _frames(a14b)
    again = _frames(a14b)
    assert np.abs(adapted - base).max() > 1e-2 and np.abs(half - adapted).max() > 1e-3
    assert np.array_equal(again, base)  # the hooks are gone: exactly the base model


def test_an_expert_without_its_file_runs_without_the_adapter(
    a14b: WanVideoPipeline, loras: Path
) -> None:
    library = LoraLibrary(loras, torch.device("cpu"), torch.float32)
    one_step = {"num_inference_steps": 1}  # t = 999: only the high-noise expert runs
    base = _frames(a14b, **one_step)
    with applied(a14b.components, library, (LoraRef(name="late"),)):
        high_only = _frames(a14b, **one_step)
        late = _frames(a14b)
    assert np.array_equal(high_only, base)
    assert np.abs(late - _frames(a14b)).max() > 1e-3  # the low-noise steps do change


def test_two_adapters_add_up_and_a_bad_one_is_refused_by_name(
    a14b: WanVideoPipeline, loras: Path
) -> None:
    library = LoraLibrary(loras, torch.device("cpu"), torch.float32)
    both = (LoraRef(name="detail"), LoraRef(name="fast", scale=-0.5))
    with applied(a14b.components, library, both):
        combined = _frames(a14b)
    with applied(a14b.components, library, both[:1]):
        single = _frames(a14b)
    assert np.abs(combined - single).max() > 1e-3
    with pytest.raises(InvalidRequest) as missing:
        check_loras(a14b.components, library, (LoraRef(name="nope"),))
    assert missing.value.field == "loras" and "adapter directory" in missing.value.rule


def _merged_reference(path: Path, loras: Path, name: str, scale: float, embeds: Any) -> Any:
    """diffusers' own pipeline on the checkpoint with the adapter merged into its weights:
    W + scale * alpha / rank * B @ A (alpha = rank here)."""
    import diffusers
    from safetensors.torch import load_file

    tensors = load_file(str(loras / name / "pytorch_lora_weights.safetensors"))
    merged = path.parent / f"{path.name}-merged-{name}"
    if not merged.exists():
        pipe: Any = diffusers.WanPipeline.from_pretrained(str(path))  # type: ignore[no-untyped-call]
        for expert in (pipe.transformer, pipe.transformer_2):
            state = expert.state_dict()
            for key, down in tensors.items():
                if key.endswith(".lora_A.weight"):
                    stem = key.removeprefix("transformer.").removesuffix(".lora_A.weight")
                    up = tensors[key.replace("lora_A", "lora_B")]
                    state[f"{stem}.weight"] += scale * (up @ down)
            expert.load_state_dict(state)
        pipe.save_pretrained(str(merged))
    return _diffusers_frames(merged, None, embeds, shift=3.0, seed=3, **CALL)


def test_the_adapted_video_equals_diffusers_with_the_adapter_merged(
    a14b: WanVideoPipeline, loras: Path, tiny_a14b: Path
) -> None:
    library = LoraLibrary(loras, torch.device("cpu"), torch.float32)
    with applied(a14b.components, library, (LoraRef(name="detail", scale=0.7),)):
        ours = _frames(a14b)
    embeds = (a14b.encode_prompt("a fox"), a14b.encode_prompt(""))
    theirs = _merged_reference(tiny_a14b, loras, "detail", 0.7, embeds)
    assert np.abs(ours - theirs).max() <= 1e-4


def test_the_adapted_video_equals_diffusers_load_lora_weights_and_set_adapters(
    a14b: WanVideoPipeline, loras: Path, tiny_a14b: Path
) -> None:
    import diffusers

    library = LoraLibrary(loras, torch.device("cpu"), torch.float32)
    with applied(a14b.components, library, (LoraRef(name="detail", scale=0.7),)):
        ours = _frames(a14b)
    pipe: Any = diffusers.WanPipeline.from_pretrained(str(tiny_a14b))  # type: ignore[no-untyped-call]
    pipe.scheduler = diffusers.UniPCMultistepScheduler.from_config(  # type: ignore[no-untyped-call]
        pipe.scheduler.config, flow_shift=3.0
    )
    pipe.load_lora_weights(str(loras / "detail"), adapter_name="detail")
    pipe.load_lora_weights(
        str(loras / "detail"), adapter_name="detail", load_into_transformer_2=True
    )
    pipe.set_adapters(["detail"], [0.7])
    theirs = pipe(
        prompt_embeds=a14b.encode_prompt("a fox"),
        negative_prompt_embeds=a14b.encode_prompt(""),
        generator=torch.Generator().manual_seed(3),
        output_type="np",
        **CALL,
    ).frames[0]
    assert np.abs(ours - theirs).max() <= 1e-4


def _generate(args: list[str], nproc: int = 1) -> Any:
    done = run_engine(["-m", "wanserve", "generate", *args], nproc)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_fsdp_and_ulysses_on_two_ranks_give_the_one_rank_adapted_video(
    tiny_a14b: Path, loras: Path, tmp_path: Path
) -> None:
    common = ["--model", str(tiny_a14b), "--prompt", "a fox", "--size", "64x64"]
    common += ["--frames", "5", "--steps", "3", "--seed", "3", "--loras-dir", str(loras)]
    common += ["--lora", "detail:0.7", "--lora", "late"]
    _generate([*common, "--out", str(tmp_path / "a.mp4"), "--save-frames", str(tmp_path / "a.npy")])
    parallel = ["--fsdp", "--ulysses", "2", "--out", str(tmp_path / "b.mp4")]
    _generate([*common, *parallel, "--save-frames", str(tmp_path / "b.npy")], nproc=2)
    a, b = np.load(tmp_path / "a.npy"), np.load(tmp_path / "b.npy")
    assert np.abs(a - b).max() < 1e-4


def test_an_adapters_card_sets_the_defaults_a_request_leaves_out(
    tiny_a14b: Path, loras: Path, tmp_path: Path
) -> None:
    common = ["--model", str(tiny_a14b), "--prompt", "a fox", "--size", "32x32", "--frames", "5"]
    common += ["--loras-dir", str(loras), "--lora", "fast", "--out", str(tmp_path / "a.mp4")]
    done = _generate(common)  # fast's card: 2 steps, guidance 1
    assert [s.step for s in done.of_type("step")] == [1, 2]
    chosen = _generate([*common, "--steps", "3"])  # the request wins
    assert [s.step for s in chosen.of_type("step")] == [1, 2, 3]


def test_a_warm_engine_reads_each_adapter_once_and_switches_per_task(
    tiny_a14b: Path, loras: Path, tmp_path: Path
) -> None:
    import subprocess

    from tests.conftest import subprocess_env
    from tests.engine.conftest import TIMEOUT_S, engine_command, make_spec

    command = ["-m", "wanserve.engine", "serve", "--model", str(tiny_a14b)]
    proc = subprocess.Popen(
        engine_command([*command, "--loras-dir", str(loras)]),
        env=subprocess_env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    served = Served(proc)

    def spec(task_id: str, *refs: dict[str, Any]) -> dict[str, Any]:
        changes = {"num_inference_steps": 2, "num_frames": 5, "loras": list(refs)}
        return make_spec(tiny_a14b, tmp_path / task_id, task_id=task_id, **changes)

    try:
        served.until("ready")
        order: list[tuple[str, tuple[dict[str, Any], ...]]] = [
            ("base", ()),
            ("lora", ({"name": "detail"},)),
            ("lora-again", ({"name": "detail"},)),
            ("half", ({"name": "detail", "scale": 0.5},)),
            ("missing", ({"name": "nope"},)),
            ("base-again", ()),
        ]
        for task_id, refs in order:
            served.send({"op": "run", "spec": spec(task_id, *refs)})
        results = {t: served.until("error" if t == "missing" else "result", t) for t, _ in order}
        served.send({"op": "shutdown"})
        assert proc.wait(timeout=TIMEOUT_S) == 0
    finally:
        proc.kill()
        proc.wait()
    sha = {t: getattr(e, "sha256", None) for t, e in results.items()}
    assert sha["base"] == sha["base-again"] != sha["lora"] == sha["lora-again"] != sha["half"]
    loaded = [e.message for e in served.events if e.type == "log" and "LoRA" in e.message]
    assert loaded == ["LoRA detail loaded"]  # read once, for the first task that named it
    assert results["missing"].code == "invalid_spec" and "nope" in results["missing"].message
