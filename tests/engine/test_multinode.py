"""Two hosts over a real network: network namespaces joined by a veth pair, torchrun --nnodes 2.

Each "host" is a fresh network namespace with one end of a veth pair (10.231.0.1 and .2/24) and
its own loopback; nothing else can reach them and they reach nothing else. The rendezvous, the
process group's store and gloo's traffic all cross the veth link over TCP. Both the engine's own
multi-node command and the exact pod commands of a rendered PyTorchJob must give the video of one
process; the pod commands of the `generate_py` mode run the operator's generate.py (the
stand-in, tests/engine/fixtures/fake_generate.py) across both hosts. Needs root (`ip netns`);
skipped, saying why, where namespaces cannot be made. The namespaces (and with them the veth
pair) are deleted whatever happens, after every process started in them is killed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
import redis

from tests.conftest import subprocess_env
from tests.engine.conftest import TIMEOUT_S, OneRankRun, make_spec, write_spec
from wanserve.backends.kubernetes.render import JobRequest, RenderConfig, render_pytorchjob
from wanserve.backends.kubernetes.template import load_template
from wanserve.domain.events import ResultEvent, parse_event
from wanserve.domain.spec import VideoSpec

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PORT = 29500  # every namespace has its own ports: no clash with anything outside
FAKE_GENERATE = Path(__file__).parent / "fixtures" / "fake_generate.py"


@dataclass(frozen=True)
class Host:
    netns: str
    device: str  # its end of the veth pair
    address: str

    def command(self, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.netns, *argv]

    def env(self, **extra: str) -> dict[str, str]:
        # gloo finds its own address from the hostname by default, and both namespaces share
        # this machine's hostname: name the interface, as a multi-homed host would.
        return subprocess_env(GLOO_SOCKET_IFNAME=self.device, **extra)


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=False)


def _why_no_namespaces() -> str | None:
    if sys.platform != "linux":
        return "network namespaces are Linux only"
    if shutil.which("ip") is None:
        return "iproute2's `ip` is not installed"
    if os.geteuid() != 0:
        return "`ip netns add` needs root (CI runs this as root)"
    return None


def _make_hosts(tag: str) -> tuple[Host, Host]:
    """Two namespaces and a veth pair between them; raises RuntimeError naming the step."""
    hosts = (
        Host(f"wsn{tag}a", f"wsv{tag}a", "10.231.0.1"),
        Host(f"wsn{tag}b", f"wsv{tag}b", "10.231.0.2"),
    )
    steps = [
        ("netns", "add", hosts[0].netns),
        ("netns", "add", hosts[1].netns),
        ("link", "add", hosts[0].device, "type", "veth", "peer", "name", hosts[1].device),
    ]
    for host in hosts:
        steps += [
            ("link", "set", host.device, "netns", host.netns),
            ("-n", host.netns, "addr", "add", f"{host.address}/24", "dev", host.device),
            ("-n", host.netns, "link", "set", host.device, "up"),
            ("-n", host.netns, "link", "set", "lo", "up"),
        ]
    for step in steps:
        done = _ip(*step)
        if done.returncode != 0:
            raise RuntimeError(f"ip {' '.join(step)}: {done.stderr.strip()}")
    return hosts


def _remove_hosts(tag: str) -> None:
    for suffix in ("a", "b"):
        netns = f"wsn{tag}{suffix}"
        pids = _ip("netns", "pids", netns).stdout.split()
        for pid in pids:  # only this test's processes live in its own namespaces
            try:
                os.kill(int(pid), 9)
            except ProcessLookupError:
                pass
        _ip("netns", "del", netns)  # deletes the veth end inside it, and so the pair
        _ip("link", "del", f"wsv{tag}{suffix}")  # a pair never moved into a namespace


@pytest.fixture
def two_hosts() -> Iterator[tuple[Host, Host]]:
    reason = _why_no_namespaces()
    if reason is not None:
        pytest.skip(reason)
    tag = uuid.uuid4().hex[:6]
    try:
        try:
            hosts = _make_hosts(tag)
        except RuntimeError as exc:
            pytest.skip(f"cannot make network namespaces here: {exc}")
        yield hosts
    finally:
        _remove_hosts(tag)


def _run_on(
    hosts: tuple[Host, Host], argvs: list[list[str]], envs: list[dict[str, str]], logs: Path
) -> list[str]:
    """Start one command per host, wait for both (bounded); returns their logs."""
    procs = []
    for host, argv, env, name in zip(hosts, argvs, envs, ("a", "b"), strict=True):
        with open(logs / f"{name}.log", "w") as out:
            procs.append(
                subprocess.Popen(host.command(argv), env=env, stdout=out, stderr=subprocess.STDOUT)
            )
    try:
        codes = [p.wait(timeout=TIMEOUT_S) for p in procs]
    finally:
        for p in procs:
            p.kill()
            p.wait()
    texts = [(logs / f"{name}.log").read_text(errors="replace") for name in ("a", "b")]
    for code, text in zip(codes, texts, strict=True):
        assert code == 0, text[-4000:]
    return texts


def _mp4_frames(path: Path) -> np.ndarray:
    with av.open(str(path)) as video:
        frames = [f.to_ndarray(format="rgb24") for f in video.decode(video=0)]
    return np.stack(frames).astype(np.int16)


def test_the_engines_own_two_node_command_gives_the_one_process_video(
    two_hosts: tuple[Host, Host], one_rank_run: OneRankRun, tiny_a14b: Path, tmp_path: Path
) -> None:
    spec = write_spec(tmp_path / "spec.json", make_spec(tiny_a14b, tmp_path / "out"))
    head = two_hosts[0].address
    argvs = [
        [
            sys.executable,
            *("-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1"),
            *("--rdzv-backend", "c10d", "--rdzv-endpoint", f"{head}:{PORT}"),
            *("--rdzv-id", "netns", "--rdzv-conf", f"is_host={int(rank == 0)}"),
            *("--local-addr", host.address),
            *("-m", "wanserve.engine", "run", "--spec", str(spec), "--cfg-parallel"),
            *("--save-frames", str(tmp_path / f"frames{rank}.npy")),
        ]
        for rank, host in enumerate(two_hosts)
    ]
    logs = _run_on(two_hosts, argvs, [h.env() for h in two_hosts], tmp_path)
    assert "rank 1/2 on cpu (gloo)" in logs[1] and "rank 0/2 on cpu (gloo)" in logs[0]
    frames = np.load(tmp_path / "frames0.npy")
    assert frames.shape == one_rank_run.frames.shape == (9, 64, 64, 3)
    assert np.abs(frames - one_rank_run.frames).max() <= 1e-4
    events = [parse_event(line) for line in logs[0].splitlines() if line.startswith("{")]
    (result,) = [e for e in events if isinstance(e, ResultEvent)]
    assert Path(result.path) == tmp_path / "out" / "video.mp4"


def _operator_env(role: str, index: int, head: str) -> dict[str, str]:
    """What training-operator v1.9 sets in each pod (envvar.go), the head being `head`."""
    rank = index + (1 if role == "Worker" else 0)
    return {
        "MASTER_ADDR": head,
        "MASTER_PORT": str(PORT),
        "PET_MASTER_ADDR": head,
        "PET_MASTER_PORT": str(PORT),
        "WORLD_SIZE": "2",
        "RANK": str(rank),
        "PET_NNODES": "2",
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


def test_the_rendered_pytorchjobs_pod_commands_give_the_one_process_video(
    two_hosts: tuple[Host, Host],
    one_rank_run: OneRankRun,
    tiny_a14b: Path,
    unix_valkey: str,
    tmp_path: Path,
) -> None:
    spec = VideoSpec.model_validate(make_spec(tiny_a14b, tmp_path / "unused"))
    config = RenderConfig(
        nnodes=2,
        nproc_per_node=1,
        gpus_per_node=0,
        redis_url=unix_valkey,
        queue_prefix="netns",
        output_url=str(tmp_path / "pods"),
    )
    job = JobRequest(task_id="video_netns", attempt=1, spec=spec, timeout_s=600)
    pods = _pods(render_pytorchjob(load_template(None), job, config))
    assert [role for role, _, _ in pods] == ["Master", "Worker"]
    commands = [container["command"] for _, _, container in pods]
    _run_on(two_hosts, commands, _pod_envs(pods, two_hosts), tmp_path)

    client = redis.Redis.from_url(unix_valkey)
    try:
        entries: Any = client.xrange("netns:engine:video_netns:1")
    finally:
        client.close()
    events = [parse_event(fields[b"event"]) for _, fields in entries]
    (result,) = [e for e in events if isinstance(e, ResultEvent)]
    video = tmp_path / "pods" / "video_netns" / "1" / "video.mp4"
    assert Path(result.path) == video
    assert [e.step for e in events if e.type == "step"] == [1, 2, 3, 4]
    ours, reference = _mp4_frames(video), _mp4_frames(one_rank_run.output / "video.mp4")
    assert ours.shape == reference.shape == (9, 64, 64, 3)
    assert int(np.abs(ours - reference).max()) <= 2  # float frames within 1e-7, then x264


def _pod_envs(
    pods: list[tuple[str, int, dict[str, Any]]], hosts: tuple[Host, Host]
) -> list[dict[str, str]]:
    bin_dir = os.path.dirname(sys.executable)  # torchrun, as the image has it on PATH
    envs = []
    for (role, index, container), host in zip(pods, hosts, strict=True):
        env = host.env(**{e["name"]: e["value"] for e in container["env"]})
        env.update(_operator_env(role, index, hosts[0].address))
        env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
        envs.append(env)
    return envs


def test_generate_py_mode_runs_the_operators_script_across_both_hosts(
    two_hosts: tuple[Host, Host], unix_valkey: str, tmp_path: Path
) -> None:
    ckpt = tmp_path / "Wan2.2-T2V-A14B"
    ckpt.mkdir()
    runner = {
        "script": str(FAKE_GENERATE),
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
        generate_py_config=runner,
        nnodes=2,
        gpus_per_node=0,
        redis_url=unix_valkey,
        queue_prefix="netns-gen",
        output_url=str(tmp_path / "out"),
    )
    job = JobRequest(task_id="video_gen", attempt=1, spec=spec, timeout_s=600)
    pods = _pods(render_pytorchjob(load_template(None), job, config))
    logs = _run_on(
        two_hosts, [c["command"] for _, _, c in pods], _pod_envs(pods, two_hosts), tmp_path
    )
    # generate.py's two ranks, one per host, formed one group: the stand-in asserts
    # ulysses_size == WORLD_SIZE after init_process_group, and logs its args on rank 0
    assert "--nnodes 2" in logs[0] and "--nnodes 2" in logs[1]
    assert "ulysses_size=2" in logs[0]
    client = redis.Redis.from_url(unix_valkey)
    try:
        entries: Any = client.xrange("netns-gen:engine:video_gen:1")
    finally:
        client.close()
    events = [parse_event(fields[b"event"]) for _, fields in entries]
    assert isinstance(events[-1], ResultEvent) and events[-1].frames == 5
    assert Path(events[-1].path) == tmp_path / "out" / "video_gen" / "1" / "video.mp4"
    assert [e for e in events if e.type == "step"][-1].step == 8
    assert sum(e.type == "result" for e in events) == 1  # node 1's runner reports nothing
    assert '"type":"result"' not in logs[1]
