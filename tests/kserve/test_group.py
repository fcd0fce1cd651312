"""A multi-node predictor really works: the rendered head and worker pods of
`k8s render --backend kserve --nnodes 2` (decision 0013), run as local processes with what
Kubernetes gives them (the head Service's name resolving to the head, a worker's pod index),
form one torch.distributed group; a task submitted to the head's KServe server completes and
makes the same video as one engine process. Plus the group's variables as the pods read them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.backends.kubernetes import test_pod_commands as pods
from tests.conftest import subprocess_env
from wanserve.backends.base import Run
from wanserve.backends.kserve.render import KServeOptions, render_model, server_args
from wanserve.backends.kserve.workers import POD_INDEX_LABEL
from wanserve.backends.process import LocalOptions
from wanserve.domain.errors import InvalidRequest
from wanserve.domain.events import ResultEvent, StepEvent
from wanserve.kserve.group import Group, GroupOptions, worker_script
from wanserve.settings import KServeSettings, Settings

MODEL = "wan2.2-tiny"
TIMEOUT_S = 300
tiny_checkpoint = pods.tiny_checkpoint  # the pod-command test's tiny A14B checkpoint


def _env(container: dict[str, Any], **cluster: str) -> dict[str, str]:
    """The container's environment as the kubelet fills it, then what this machine needs."""
    env: dict[str, str] = {}
    for item in container["env"]:
        if "value" in item:
            env[item["name"]] = item["value"]
        else:  # the downward API: the one field a worker reads
            path = item["valueFrom"]["fieldRef"]["fieldPath"]
            assert path == f"metadata.labels['{POD_INDEX_LABEL}']", path
            env[item["name"]] = cluster.pop(POD_INDEX_LABEL)
    env.update(cluster)
    bin_dir = os.path.dirname(sys.executable)  # python and torchrun, as the image has them
    return subprocess_env(**env, PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")


def _start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def _wait_loaded(url: str, procs: dict[str, subprocess.Popen[bytes]], root: Path) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        for name, proc in procs.items():
            assert proc.poll() is None, f"{name} exited: {_logs(root)}"
        try:
            if httpx.get(f"{url}/wanserve/v1/status", timeout=2).json()["engine"] == "idle":
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError(_logs(root))


def _logs(root: Path) -> str:
    """The pods' logs and the head engine's (under its data directory)."""
    return "\n".join(f"--- {p}\n{p.read_text()[-3000:]}" for p in sorted(root.rglob("*.log")))


async def test_head_and_worker_pods_serve_the_single_process_video(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    pytest.importorskip("kserve")
    from wanserve.backends.kserve.backend import KServeBackend

    models = str(tiny_checkpoint.parent)
    settings = Settings(engine={"ulysses": 2}, kubernetes={"models_mount": models})
    isvc, service, workers = render_model(settings, MODEL, KServeOptions(mode="raw", nnodes=2))
    assert workers["spec"]["replicas"] == 1
    (head,) = isvc["spec"]["predictor"]["containers"]
    (worker,) = workers["spec"]["template"]["spec"]["containers"]
    http, master = pods._free_port(), pods._free_port()
    # What differs here from a cluster: the head Service's name is 127.0.0.1, the ports are
    # free ones, no GPU, and each "pod" has its own /tmp.
    here = {"PET_MASTER_ADDR": "127.0.0.1", "PET_MASTER_PORT": str(master)}
    here["WANSERVE_ENGINE__DEVICE"] = "cpu"
    assert head["args"] == server_args(MODEL)
    args = [*head["args"][:-1], str(http)]  # --http_port
    logs = tmp_path / "logs"
    logs.mkdir()
    head_env = _env(head, **here, WANSERVE_DATA_DIR=str(tmp_path / "head"))
    worker_env = _env(
        worker, **here, WANSERVE_DATA_DIR=str(tmp_path / "worker"), **{POD_INDEX_LABEL: "0"}
    )
    procs = {
        "head": _start([*head["command"], *args], head_env, logs / "head.log"),
        "worker-0": _start(worker["command"], worker_env, logs / "worker-0.log"),
    }
    url = f"http://127.0.0.1:{http}"
    backend = KServeBackend("kserve", KServeSettings(url=url), MODEL, 1)
    try:
        _wait_loaded(url, procs, tmp_path)
        status = httpx.get(f"{url}/wanserve/v1/status", timeout=5).json()
        assert status["model"] == MODEL
        spec = pods._spec(tiny_checkpoint).model_copy(
            update={"checkpoint": None, "task_id": "video_group", "output": str(tmp_path / "out")}
        )
        run = Run(task_id="video_group", attempt=1, spec=spec, workdir=tmp_path / "run")
        events = [event async for event in backend.run(run)]
        # The head's torchrun waits for node 1, so the engine loaded only with the worker in
        # its group; the worker serves on.
        assert procs["worker-0"].poll() is None, _logs(tmp_path)
    finally:
        await backend.close()
        for proc in procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)
    result = events[-1]
    assert isinstance(result, ResultEvent), (events[-3:], _logs(tmp_path))
    assert [e.step for e in events if isinstance(e, StepEvent)] == [1, 2, 3, 4]
    reference = pods.single_process_video(pods._spec(tiny_checkpoint), tmp_path)
    ours, single = pods._frames(Path(result.path)), pods._frames(reference)
    assert ours.shape == single.shape == (9, 64, 64, 3)
    assert int(np.abs(ours - single).max()) <= 2  # the acceptance bar's tolerance
    assert float(single.std()) > 1.0  # a real picture, not a constant


def test_the_group_is_read_from_torchruns_variables() -> None:
    assert Group.from_env({}) is None and Group.from_env({"PET_NNODES": "1"}) is None
    env = {"PET_NNODES": "3", "PET_NPROC_PER_NODE": "8", "PET_MASTER_ADDR": "h.ns.svc"}
    group = Group.from_env(env)
    assert group == Group(3, 8, "h.ns.svc", 29500, 0)
    assert group.env() == env | {"PET_MASTER_PORT": "29500"}
    for bad, field in (
        ({"PET_NNODES": "2"}, "PET_MASTER_ADDR"),
        (env | {"PET_NODE_RANK": "3"}, "PET_NODE_RANK"),
        (env | {"PET_MASTER_PORT": "x"}, "PET_MASTER_PORT"),
    ):
        with pytest.raises(InvalidRequest) as err:
            Group.from_env(bad)
        assert err.value.field == field


def test_the_head_launches_node_0_of_the_group_and_workers_the_next_nodes() -> None:
    group = Group(2, 2, "head.video.svc", 29511)
    options = group.options(LocalOptions(nproc=2, ulysses=4, python="py"))
    assert isinstance(options, GroupOptions) and options.ulysses == 4
    engine = options.engine_args("serve", "--model", MODEL)
    assert options.launch(engine) == [
        "py", "-m", "torch.distributed.run", "--nnodes", "2", "--node-rank", "0",
        "--nproc-per-node", "2", "--master-addr", "head.video.svc", "--master-port", "29511",
        *engine,
    ]  # fmt: skip
    assert LocalOptions(nproc=1).launch(["x"])[1:] == ["x"]  # one pod alone: no torchrun
    with pytest.raises(InvalidRequest, match="engine.nproc"):
        group.options(LocalOptions(nproc=1))
    with pytest.raises(InvalidRequest, match="PET_NODE_RANK"):
        Group(2, 1, "h", node_rank=1).options(LocalOptions())
    script = worker_script(engine)
    for index, rank in (("0", "1"), ("6", "7")):
        shown = subprocess.run(
            ["sh", "-c", script.replace("exec torchrun", "echo $PET_NODE_RANK")],
            env={"WANSERVE_POD_INDEX": index, "PATH": os.environ["PATH"]},
            capture_output=True,
            text=True,
            check=True,
        )
        assert shown.stdout.split()[0] == rank
