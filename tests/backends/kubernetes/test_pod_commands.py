"""The pod commands really work: the exact lines of a rendered PyTorchJob, run as two local
"pods" (1 process each) with the environment the training operator injects, make the same video
as one engine process. Engine events reach a real Valkey through the rendered events URL."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis

from tests.conftest import subprocess_env
from wanserve.backends.kubernetes.render import JobRequest, RenderConfig, render_pytorchjob
from wanserve.backends.kubernetes.template import load_template
from wanserve.domain.events import ResultEvent, StepEvent, parse_event
from wanserve.domain.models import Layout
from wanserve.domain.spec import VideoSpec

pytest.importorskip("diffusers")
av = pytest.importorskip("av")

pytestmark = [pytest.mark.integration, pytest.mark.slow]
TIMEOUT_S = 300


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from wanserve.engine.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("models") / "wan2.2-tiny", Layout.A14B)


def _spec(checkpoint: Path) -> VideoSpec:
    return VideoSpec(
        model="wan2.2-tiny",
        task="t2v",
        prompt="a red fox runs through snow",
        negative_prompt="blurry",
        width=64,
        height=64,
        num_frames=9,
        num_inference_steps=4,
        shift=3.0,
        guidance_scale=4.0,
        guidance_scale_2=3.0,
        seed=7,
        fps=16,
        checkpoint=str(checkpoint),
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _operator_env(role: str, index: int, nnodes: int, port: int) -> dict[str, str]:
    """What training-operator v1.9 sets in each pod (envvar.go), pointed at 127.0.0.1."""
    rank = index + (1 if role == "Worker" else 0)
    return {
        "PYTHONUNBUFFERED": "0",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
        "PET_MASTER_ADDR": "127.0.0.1",
        "PET_MASTER_PORT": str(port),
        "WORLD_SIZE": str(nnodes),  # replicas x nprocPerNode (1)
        "RANK": str(rank),
        "PET_NNODES": str(nnodes),
        "PET_NODE_RANK": str(rank),
        "PET_NPROC_PER_NODE": "1",
    }


def _pods(manifest: dict[str, Any]) -> list[tuple[str, int, dict[str, Any]]]:
    out = []
    for role, replica in manifest["spec"]["pytorchReplicaSpecs"].items():
        container = next(
            c for c in replica["template"]["spec"]["containers"] if c["name"] == "pytorch"
        )
        out += [(role, index, container) for index in range(replica["replicas"])]
    return out


def single_process_video(spec: VideoSpec, tmp_path: Path) -> Path:
    """`spec`'s video from one engine process (`wanserve.engine run`): the reference."""
    single = spec.model_copy(update={"output": str(tmp_path / "single"), "task_id": "ref"})
    spec_file = tmp_path / "single.json"
    spec_file.write_text(single.model_dump_json())
    done = subprocess.run(
        [sys.executable, "-m", "wanserve.engine", "run", "--spec", str(spec_file)],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return tmp_path / "single" / "video.mp4"


def _frames(path: Path) -> np.ndarray:
    with av.open(str(path)) as video:
        return np.stack([f.to_ndarray(format="rgb24") for f in video.decode(video=0)]).astype(
            np.int16
        )


def test_two_pods_from_the_manifest_make_the_single_process_video(
    tiny_checkpoint: Path, tmp_path: Path, valkey_url: str, queue_prefix: str
) -> None:
    spec = _spec(tiny_checkpoint)
    config = RenderConfig(
        nnodes=2,
        nproc_per_node=1,
        gpus_per_node=0,
        redis_url=valkey_url,
        queue_prefix=queue_prefix,
        output_url=str(tmp_path / "pods"),
    )
    job = JobRequest(task_id="video_pods", attempt=1, spec=spec, timeout_s=600)
    manifest = render_pytorchjob(load_template(None), job, config)
    port = _free_port()
    bin_dir = os.path.dirname(sys.executable)  # torchrun, as the image has it on PATH
    procs = []
    for role, index, container in _pods(manifest):
        assert "valueFrom" not in str(container["env"])
        env = subprocess_env(**{e["name"]: e["value"] for e in container["env"]})
        env.update(_operator_env(role, index, 2, port))
        env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
        procs.append(
            subprocess.Popen(
                container["command"],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    try:
        outputs = [p.communicate(timeout=TIMEOUT_S) for p in procs]
    finally:
        for p in procs:
            p.kill()
    for p, (_, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err[-3000:]

    client = redis.Redis.from_url(valkey_url)
    try:
        entries: Any = client.xrange(f"{queue_prefix}:engine:video_pods:1")
    finally:
        client.close()
    events = [parse_event(fields[b"event"]) for _, fields in entries]
    (result,) = [e for e in events if isinstance(e, ResultEvent)]
    pod_video = tmp_path / "pods" / "video_pods" / "1" / "video.mp4"
    assert Path(result.path) == pod_video and pod_video.exists()
    assert [e.step for e in events if e.type == "step"] == [1, 2, 3, 4]

    ours, reference = _frames(pod_video), _frames(single_process_video(spec, tmp_path))
    assert ours.shape == reference.shape == (9, 64, 64, 3)
    assert int(np.abs(ours - reference).max()) <= 2  # the acceptance bar's tolerance
    assert float(reference.std()) > 1.0  # a real picture, not a constant


def test_generate_py_mode_pod_runs_the_operators_script_through_the_runner(
    tmp_path: Path, valkey_url: str, queue_prefix: str
) -> None:
    from tests.conftest import ROOT

    fake_generate = ROOT / "tests" / "engine" / "fixtures" / "fake_generate.py"  # Wan2.2 stand-in
    ckpt = tmp_path / "Wan2.2-T2V-A14B"
    ckpt.mkdir()
    runner_config = {
        "script": str(fake_generate),
        "checkpoints": {"wan2.2-t2v-a14b": str(ckpt)},
        "env": {"FAKE_WAN_STEP_S": "0.01"},
    }
    spec = VideoSpec(
        model="wan2.2-t2v-a14b",
        task="t2v",
        prompt="two cats boxing on a stage",
        width=832,
        height=480,
        num_frames=5,
        num_inference_steps=8,
        shift=12.0,
        guidance_scale=4.0,
        guidance_scale_2=3.0,
        seed=7,
        fps=16,
    )
    config = RenderConfig(
        mode="generate_py",
        generate_py_config=runner_config,
        gpus_per_node=0,
        redis_url=valkey_url,
        queue_prefix=queue_prefix,
        output_url=str(tmp_path / "out"),
    )
    job = JobRequest(task_id="video_gen", attempt=1, spec=spec, timeout_s=600)
    manifest = render_pytorchjob(load_template(None), job, config)
    ((role, index, container),) = _pods(manifest)
    env = subprocess_env(**{e["name"]: e["value"] for e in container["env"]})
    env.update(_operator_env(role, index, 1, _free_port()))
    env["PATH"] = f"{os.path.dirname(sys.executable)}{os.pathsep}{env.get('PATH', '')}"
    done = subprocess.run(
        container["command"], env=env, capture_output=True, text=True, timeout=TIMEOUT_S
    )
    assert done.returncode == 0, done.stderr[-3000:]
    client = redis.Redis.from_url(valkey_url)
    try:
        entries: Any = client.xrange(f"{queue_prefix}:engine:video_gen:1")
    finally:
        client.close()
    events = [parse_event(fields[b"event"]) for _, fields in entries]
    assert isinstance(events[-1], ResultEvent) and events[-1].frames == 5
    assert Path(events[-1].path) == tmp_path / "out" / "video_gen" / "1" / "video.mp4"
    steps = [e for e in events if isinstance(e, StepEvent)]
    assert steps and steps[-1].step == steps[-1].total == 8  # the runner may coalesce fast steps
