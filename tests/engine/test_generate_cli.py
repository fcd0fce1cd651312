"""`wanserve generate` and `wanserve model tiny`, in one process and under torchrun -m wanserve."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from tests.engine.conftest import run_engine
from wanserve.domain.events import ExitCode
from wanserve.engine.loading import inspect_checkpoint


def _decoded(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


@pytest.mark.parametrize(
    ("layout", "model_id"), [("ti2v-5b", "wan2.2-tiny-ti2v"), ("i2v-a14b", "wan2.2-tiny-i2v")]
)
def test_model_tiny_builds_the_layout_it_is_asked_for(
    layout: str, model_id: str, tmp_path: Path
) -> None:
    done = run_engine(
        ["-m", "wanserve", "model", "tiny", "--out", str(tmp_path / "t"), "--layout", layout]
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert inspect_checkpoint(tmp_path / "t").card.id == model_id


def test_model_tiny_names_the_layouts_it_knows(tmp_path: Path) -> None:
    bad = run_engine(
        ["-m", "wanserve", "model", "tiny", "--out", str(tmp_path / "x"), "--layout", "sd15"]
    )
    assert bad.returncode == 2 and "layout='sd15' is invalid" in bad.stderr
    assert "must be one of a14b, i2v-a14b, ti2v-5b" in bad.stderr


def test_generate_i2v_a14b_on_demand_and_under_torchrun_gives_the_same_video(
    input_image: Path, tmp_path: Path
) -> None:
    models = tmp_path / "models"
    args = ["-m", "wanserve", "generate", "--model", "wan2.2-tiny-i2v"]
    args += ["--models-dir", str(models), "--image", str(input_image), "--prompt", "a cat"]
    args += ["--size", "64x64", "--frames", "9", "--steps", "3", "--seed", "5"]
    one = run_engine(
        [*args, "--out", str(tmp_path / "a.mp4"), "--save-frames", str(tmp_path / "a.npy")]
    )
    assert one.returncode == 0, one.stderr[-2000:]
    assert inspect_checkpoint(models / "wan2.2-tiny-i2v").card.id == "wan2.2-tiny-i2v"
    parallel = ["--ulysses", "2", "--out", str(tmp_path / "b.mp4")]
    two = run_engine([*args, *parallel, "--save-frames", str(tmp_path / "b.npy")], nproc=2)
    assert two.returncode == 0, two.stderr[-2000:]
    (switch,) = one.of_type("expert_switch")
    assert switch.timestep < 900 <= [s.timestep for s in one.of_type("step")][switch.step - 2]
    a, b = np.load(tmp_path / "a.npy"), np.load(tmp_path / "b.npy")
    assert a.shape == (9, 64, 64, 3) and np.abs(a - b).max() < 1e-4
    text = run_engine(
        [a for a in args if a not in ("--image", str(input_image))]
        + ["--out", str(tmp_path / "c.mp4")]
    )
    assert text.returncode == ExitCode.INVALID
    (error,) = text.of_type("error")
    assert error.message.startswith("input_reference=None is invalid")


def test_generate_builds_ti2v_on_demand_and_torchrun_ulysses_gives_the_same_video(
    tmp_path: Path,
) -> None:
    image = tmp_path / "in.png"
    ys, xs = np.mgrid[0:96, 0:160]
    Image.fromarray(np.stack([xs % 256, ys * 2, xs + ys], -1).astype(np.uint8)).save(image)
    models = tmp_path / "models"
    args = [
        "--model",
        "wan2.2-tiny-ti2v",
        "--models-dir",
        str(models),
        "--image",
        str(image),
        "--prompt",
        "a cat walks",
        "--size",
        "64x128",
        "--frames",
        "9",
        "--steps",
        "3",
        "--seed",
        "5",
    ]
    one = run_engine(
        [
            "-m",
            "wanserve",
            "generate",
            *args,
            "--out",
            str(tmp_path / "a.mp4"),
            "--save-frames",
            str(tmp_path / "a.npy"),
        ]
    )
    assert one.returncode == 0, one.stderr[-2000:]
    assert inspect_checkpoint(models / "wan2.2-tiny-ti2v").expand_timesteps  # built on demand
    two = run_engine(
        [
            "-m",
            "wanserve",
            "generate",
            *args,
            "--ulysses",
            "2",
            "--out",
            str(tmp_path / "b.mp4"),
            "--save-frames",
            str(tmp_path / "b.npy"),
        ],
        nproc=2,
    )
    assert two.returncode == 0, two.stderr[-2000:]
    (result,) = one.of_type("result")
    assert result.path == str(tmp_path / "a.mp4") and result.poster == str(tmp_path / "a.jpg")
    assert (result.width, result.height, result.fps) == (64, 128, 24)  # the ti2v card's fps
    assert (tmp_path / "a.jpg").is_file() and (tmp_path / "b.jpg").is_file()
    a, b = np.load(tmp_path / "a.npy"), np.load(tmp_path / "b.npy")
    assert a.shape == (9, 128, 64, 3) and np.abs(a - b).max() < 1e-4
    # Both MP4s decode to the video's shape (their bytes may differ: a float difference of 1e-7
    # can flip one rounding to uint8, and x264's decisions follow it).
    assert _decoded(tmp_path / "a.mp4").shape == _decoded(tmp_path / "b.mp4").shape == a.shape


def test_generate_names_the_bad_flag(tiny_a14b: Path, tmp_path: Path) -> None:
    done = run_engine(
        [
            "-m",
            "wanserve",
            "generate",
            "--model",
            str(tiny_a14b),
            "--prompt",
            "x",
            "--frames",
            "10",
            "--out",
            str(tmp_path / "a.mp4"),
        ]
    )
    assert done.returncode == ExitCode.INVALID
    (error,) = done.of_type("error")
    assert error.message.startswith("num_frames=10 is invalid: must be 4n+1")
