"""The generate.py command line: the template and the mapping of a spec onto its flags (pure)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.engine.generate_py.conftest import FAKE, runner_config, t2v_spec, ti2v_spec
from wanserve.domain.errors import InvalidRequest
from wanserve.domain.models import TaskKind
from wanserve.engine.generate_py import GeneratePyConfig, build_invocation


def _flag(argv: list[str], name: str) -> str | None:
    return argv[argv.index(name) + 1] if name in argv else None


def test_command_maps_every_spec_field_onto_generate_py_flags(tmp_path: Path, ckpt: Path) -> None:
    config = runner_config(ckpt, offload_model=True, convert_model_dtype=True, t5_cpu=True)
    inv = build_invocation(t2v_spec(tmp_path), config)
    argv = inv.argv
    assert argv[:2] == [sys.executable, str(FAKE)]
    expected = {
        "--task": "t2v-A14B",
        "--size": "832*480",
        "--frame_num": "5",
        "--sample_steps": "8",
        "--sample_shift": "12",
        "--base_seed": "7",
        "--prompt": "two cats boxing on a stage",
        "--save_file": str(tmp_path / "out" / "video.mp4"),
        "--ckpt_dir": str(ckpt),
        "--ulysses_size": "1",
        "--offload_model": "True",
    }
    assert {flag: _flag(argv, flag) for flag in expected} == expected
    assert "--convert_model_dtype" in argv and "--t5_cpu" in argv
    assert "--dit_fsdp" not in argv and "--image" not in argv
    # (low, high) = (3.0, 4.0) is t2v-A14B's own default: Wan2.2 takes one float, so omit it.
    assert "--sample_guide_scale" not in argv
    assert inv.boundary_ratio == 0.875 and len(inv.timesteps) == 8
    assert inv.env["FAKE_WAN_STEP_S"] == "0.01" and inv.cwd == FAKE.parent


def test_guide_scales_go_in_wans_low_high_order(tmp_path: Path, ckpt: Path) -> None:
    spec = t2v_spec(tmp_path, guidance_scale=5.5, guidance_scale_2=2.5)  # high 5.5, low 2.5
    argv = build_invocation(spec, runner_config(ckpt, guide_scale_values=2)).argv
    i = argv.index("--sample_guide_scale")
    assert argv[i + 1 : i + 3] == ["2.5", "5.5"]
    equal = t2v_spec(tmp_path, guidance_scale=3.5, guidance_scale_2=3.5)
    assert _flag(build_invocation(equal, runner_config(ckpt)).argv, "--sample_guide_scale") == "3.5"


def test_two_different_guide_scales_for_a_one_value_generate_py_are_refused(
    tmp_path: Path, ckpt: Path
) -> None:
    spec = t2v_spec(tmp_path, guidance_scale=5.5, guidance_scale_2=2.5)
    with pytest.raises(InvalidRequest) as info:
        build_invocation(spec, runner_config(ckpt))
    assert info.value.field == "guidance_scale_2" and info.value.value == 2.5
    assert "one --sample_guide_scale" in info.value.rule


def test_ti2v_and_i2v_map_to_their_wan_tasks(tmp_path: Path, ckpt: Path) -> None:
    image = tmp_path / "in.jpg"
    ti2v = ti2v_spec(tmp_path, image=str(image), task=TaskKind.I2V)
    argv = build_invocation(ti2v, runner_config(ckpt)).argv
    assert _flag(argv, "--task") == "ti2v-5B" and _flag(argv, "--image") == str(image)
    assert _flag(argv, "--sample_guide_scale") == "5"
    i2v = t2v_spec(
        tmp_path,
        model="wan2.2-i2v-a14b",
        image=str(image),
        task=TaskKind.I2V,
        guidance_scale=3.5,
        guidance_scale_2=3.5,
    )
    inv = build_invocation(i2v, runner_config(ckpt))
    assert inv.wan_task == "i2v-A14B" and inv.boundary_ratio == 0.9


@pytest.mark.parametrize(
    ("overrides", "field", "rule"),
    [
        ({"width": 1280, "height": 704}, "size", "must be one of 720*1280"),
        ({"num_frames": 6}, "num_frames", "4n+1"),
        ({"output": None}, "output", "directory"),
        ({"image": "https://example.com/cat.jpg"}, "image", "local file"),
        ({"model": "wan2.2-tiny"}, "model", "no ckpt_dir"),
    ],
)
def test_what_generate_py_cannot_run_is_refused_naming_the_field(
    tmp_path: Path, ckpt: Path, overrides: dict[str, object], field: str, rule: str
) -> None:
    with pytest.raises(InvalidRequest) as info:
        build_invocation(t2v_spec(tmp_path, **overrides), runner_config(ckpt))
    assert info.value.field == field and rule in info.value.rule


def test_world_size_above_one_runs_under_torchrun_with_ulysses(tmp_path: Path, ckpt: Path) -> None:
    config = runner_config(ckpt, nproc_per_node=2, dit_fsdp=True, t5_fsdp=True)
    argv = build_invocation(t2v_spec(tmp_path), config).argv
    assert argv[:6] == [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
    ]
    assert _flag(argv, "--ulysses_size") == "2" and "--dit_fsdp" in argv and "--t5_fsdp" in argv
    with pytest.raises(InvalidRequest, match="must divide t2v-A14B's 40 attention heads"):
        build_invocation(t2v_spec(tmp_path), runner_config(ckpt, nproc_per_node=16))
    ti2v = ti2v_spec(tmp_path)
    five = runner_config(ckpt, nproc_per_node=5)  # 40 heads split 5 ways, 24 do not
    assert _flag(build_invocation(t2v_spec(tmp_path), five).argv, "--ulysses_size") == "5"
    with pytest.raises(InvalidRequest, match="24 attention heads"):
        build_invocation(ti2v, five)


def test_several_nodes_run_torchrun_across_them(tmp_path: Path, ckpt: Path) -> None:
    config = runner_config(ckpt, nnodes=2, nproc_per_node=4, dit_fsdp=True)
    argv = build_invocation(t2v_spec(tmp_path), config).argv
    # no --standalone: torchrun takes the rendezvous from PET_* (the training operator's)
    assert argv[:7] == [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2"] + [
        "--nproc_per_node",
        "4",
    ]
    assert _flag(argv, "--ulysses_size") == "8"  # the world size, as generate.py asserts
    one_per_node = runner_config(ckpt, nnodes=2)  # 2 ranks: torchrun although 1 per node
    assert build_invocation(t2v_spec(tmp_path), one_per_node).argv[2] == "torch.distributed.run"
    endpoint = ["--rdzv-backend", "c10d", "--rdzv-endpoint", "head:29500", "--nnodes", "2"]
    explicit = runner_config(ckpt, nnodes=2, rendezvous_args=endpoint)
    argv = build_invocation(t2v_spec(tmp_path), explicit).argv
    assert argv[3:9] == endpoint and argv.count("--nnodes") == 1
    with pytest.raises(ValueError, match="--standalone, which is one node, with nnodes=2"):
        runner_config(ckpt, nnodes=2, rendezvous_args=["--standalone"])


def test_config_rejects_what_generate_py_asserts(ckpt: Path) -> None:
    with pytest.raises(ValueError, match=r"ulysses_size=2 must be 1 or equal the world size"):
        runner_config(ckpt, nproc_per_node=4, ulysses_size=2)
    with pytest.raises(ValueError, match=r"\(nnodes x nproc_per_node = 6\)"):
        runner_config(ckpt, nnodes=2, nproc_per_node=3, ulysses_size=3)
    with pytest.raises(ValueError, match="dit_fsdp and t5_fsdp need a world size > 1"):
        runner_config(ckpt, dit_fsdp=True)
    with pytest.raises(ValueError, match=r"unknown placeholder 'colour'"):
        runner_config(ckpt, extra_args=["--tint", "{colour}"])


def test_flags_can_be_renamed_or_dropped_and_extra_args_templated(
    tmp_path: Path, ckpt: Path
) -> None:
    config = runner_config(
        ckpt,
        flags={"frame_num": "--num_frames", "ulysses_size": ""},
        extra_args=["--negative_prompt", "{negative_prompt}", "--tag", "{task_id}-{size}"],
    )
    inv = build_invocation(t2v_spec(tmp_path, negative_prompt="blurry"), config)
    assert _flag(inv.argv, "--num_frames") == "5" and "--frame_num" not in inv.argv
    assert "--ulysses_size" not in inv.argv
    assert inv.argv[-4:] == ["--negative_prompt", "blurry", "--tag", "task-1-832*480"]
    assert inv.warnings == []
    plain = build_invocation(
        t2v_spec(tmp_path, negative_prompt="blurry", fps=24), runner_config(ckpt)
    )
    assert any("negative_prompt ignored" in w for w in plain.warnings)
    assert any("fps=24 ignored" in w for w in plain.warnings)


def test_config_reads_yaml_and_json_files(tmp_path: Path, ckpt: Path) -> None:
    (tmp_path / "c.yaml").write_text(
        f"script: {FAKE}\nnproc_per_node: 2\ncheckpoints:\n  wan2.2-t2v-a14b: {ckpt}\n"
    )
    from_yaml = GeneratePyConfig.from_file(tmp_path / "c.yaml")
    (tmp_path / "c.json").write_text(from_yaml.model_dump_json())
    assert GeneratePyConfig.from_file(tmp_path / "c.json") == from_yaml
    assert from_yaml.world_size == 2 and from_yaml.checkpoints["wan2.2-t2v-a14b"] == ckpt


def test_loras_are_refused_generate_py_has_none(tmp_path: Path, ckpt: Path) -> None:
    spec = t2v_spec(tmp_path, loras=[{"name": "lightx2v", "scale": 1.0}])
    with pytest.raises(InvalidRequest) as info:
        build_invocation(spec, runner_config(ckpt))
    assert info.value.field == "loras" and "no LoRA adapters" in info.value.rule
