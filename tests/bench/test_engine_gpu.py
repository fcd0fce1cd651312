"""bench/engine_gpu.py on CPU: its shape arithmetic, its configs, and the --tiny path end to end."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch

BENCH = Path(__file__).resolve().parents[2] / "bench" / "engine_gpu.py"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("engine_gpu_bench", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("model", "size", "shape", "tokens"),
    [
        # Token counts as ENGINE-NOTES derives them from Wan2.2's configs.
        ("a14b", (832, 480, 81), (1, 16, 21, 60, 104), 32760),
        ("a14b", (1280, 720, 81), (1, 16, 21, 90, 160), 75600),
        ("5b", (1280, 704, 121), (1, 48, 31, 44, 80), 27280),
    ],
)
def test_latent_shapes_and_tokens_of_the_real_sizes(
    bench: ModuleType, model: str, size: tuple[int, int, int], shape: tuple[int, ...], tokens: int
) -> None:
    latents = bench.latents_for(model, *size)
    assert latents.shape == shape and latents.tokens() == tokens


def test_sizes_the_vae_and_patch_cannot_take_are_refused(bench: ModuleType) -> None:
    with pytest.raises(ValueError, match=r"frames=80 must be 4n\+1"):
        bench.latents_for("a14b", 832, 480, 80)
    with pytest.raises(ValueError, match="must be a multiple of 32 for 5b"):
        bench.latents_for("5b", 1280, 720, 121)


def test_full_configs_have_the_published_parameter_counts(bench: ModuleType) -> None:
    from diffusers import WanTransformer3DModel

    def billions(model: str) -> float:
        config = bench.config_for(model, tiny=False)

        def count(layers: int) -> int:  # on the meta device: shapes only, no memory
            with torch.device("meta"):
                # untyped third-party constructor (diffusers' @register_to_config __init__)
                net: Any = WanTransformer3DModel(**{**config, "num_layers": layers})  # type: ignore[no-untyped-call]
            return sum(p.numel() for p in net.parameters())

        one, two = count(1), count(2)  # every block is the same size: extrapolate
        return (one + (two - one) * (int(config["num_layers"]) - 1)) / 1e9

    assert 13.5 < billions("a14b") < 15.0  # "about 14B parameters" per expert
    assert 4.5 < billions("5b") < 5.5


def test_tiny_build_has_real_rotary_tables(bench: ModuleType) -> None:
    from diffusers import WanTransformer3DModel

    built = bench.build("a14b", tiny=True, device="cpu")
    # untyped third-party constructor (diffusers' @register_to_config __init__)
    reference: Any = WanTransformer3DModel(**bench.config_for("a14b", tiny=True))  # type: ignore[no-untyped-call]
    for name, buffer in reference.rope.named_buffers():
        assert torch.equal(dict(built.rope.named_buffers())[name], buffer)
    assert all(p.dtype == torch.bfloat16 for p in built.blocks.parameters() if p.ndim == 2)
    assert built.scale_shift_table.dtype == torch.float32  # kept as from_pretrained keeps it


def test_tiny_path_runs_every_model_and_size_on_cpu(
    bench: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--tiny", "--models", "a14b,a14b-i2v,5b", "--steps", "1", "--warmup", "0"]
    assert bench.main(argv) == 0  # each case asserts its output shape
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split()[5:8] == ["diffusers", "engine", "ratio"]
    rows = [line.split() for line in lines[2:]]
    for row in rows:  # both sides timed on the same transformer, and their ratio
        diffusers_s, engine_s, ratio = map(float, row[5:8])
        assert diffusers_s > 0 and engine_s > 0 and ratio > 0
    assert [(r[0], r[2]) for r in rows] == [
        ("a14b", "16x3x4x8"),
        ("a14b", "16x3x8x12"),
        ("a14b-i2v", "16x3x4x8"),
        ("a14b-i2v", "16x3x8x12"),
        ("5b", "48x3x2x4"),
        ("5b", "48x3x4x6"),
    ]


def test_the_engine_side_runs_wanserves_own_loop_on_the_benchmarked_transformer(
    bench: ModuleType,
) -> None:
    from wanserve.engine.pipelines.wan import WanVideoPipeline

    net = bench.build("a14b-i2v", tiny=True, device="cpu")
    pipe = bench.engine_pipeline(net, "a14b-i2v", tiny=True, device="cpu")
    assert isinstance(pipe, WanVideoPipeline)
    components = pipe.components
    assert components.text_encoder.config.d_model == net.config.text_dim
    assert components.boundary_timestep == 900.0 and components.takes_image
    assert components.transformer is net
    assert components.transformer_2 is net  # one copy of the weights as both experts


@pytest.mark.skipif(torch.cuda.is_available(), reason="refusal is for machines without CUDA")
def test_without_cuda_it_refuses_with_a_message(
    bench: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    assert bench.main(["--models", "a14b", "--sizes", "480p"]) == 2
    assert "needs a CUDA GPU" in capsys.readouterr().err


def test_unknown_models_and_sizes_are_refused_by_name(bench: ModuleType) -> None:
    with pytest.raises(SystemExit):
        bench.parse_args(["--models", "a28b"])
    with pytest.raises(SystemExit):
        bench.parse_args(["--sizes", "1080p"])
