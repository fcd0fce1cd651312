"""`wanserve model pull` as a real process against the hub server on 127.0.0.1 ($HF_ENDPOINT),
serving the tiny checkpoint with sharded weights: a whole pull, a pull killed and run again, a
connection dropped mid-file, a repo missing a shard, refused repos; and `wanserve model check`."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.cli.conftest import HUB_EXTRAS
from tests.conftest import subprocess_env
from tests.fixtures.hub import HubServer, repo_files, safetensors_bytes
from wanserve.cli import app

pytestmark = pytest.mark.integration

T2V_REPO = "Wan-AI/Wan2.2-T2V-A14B-Diffusers"
SHARD = "transformer/diffusion_pytorch_model-00002-of-00002.safetensors"


def _env(hub: HubServer, tmp_path: Path) -> dict[str, str]:
    env = subprocess_env(
        HF_ENDPOINT=hub.url,
        HF_HUB_OFFLINE="0",
        HF_HOME=str(tmp_path / "hf-home"),
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_DISABLE_XET="1",
        WANSERVE_DATA_DIR=str(tmp_path / "data"),
    )
    env.pop("HF_TOKEN", None)
    return env


def _pull(hub: HubServer, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wanserve", "model", "pull", *args],
        env=_env(hub, tmp_path), capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def _checkpoint(files: dict[str, bytes]) -> dict[str, bytes]:
    return {path: data for path, data in files.items() if path not in HUB_EXTRAS}


def _pulled(target: Path) -> dict[str, bytes]:
    """What a pull left in `target`, without huggingface_hub's bookkeeping in .cache/."""
    return {p: data for p, data in repo_files(target).items() if not p.startswith(".cache/")}


def test_pull_fetches_a_known_repo_into_the_models_dir_and_checks_it(
    hub: HubServer, hub_checkpoint: dict[str, bytes], tmp_path: Path
) -> None:
    commit = hub.add_repo(T2V_REPO, hub_checkpoint)
    result = _pull(hub, tmp_path, T2V_REPO)
    assert result.returncode == 0, result.stderr
    target = tmp_path / "data" / "models" / "wan2.2-t2v-a14b"  # <data dir>/models/<model id>
    assert _pulled(target) == _checkpoint(hub_checkpoint)  # no README, example or .bin
    assert f"at commit {commit[:12]}: complete" in result.stdout
    assert "Fetching" in result.stderr  # huggingface_hub's progress bar
    from wanserve.engine.loading import inspect_checkpoint

    info = inspect_checkpoint(target)
    assert info.card.id == "wan2.2-t2v-a14b" and info.has_two_experts
    before = len(hub.fetched(T2V_REPO))
    again = _pull(hub, tmp_path, T2V_REPO)
    assert again.returncode == 0, again.stderr
    assert hub.fetched(T2V_REPO)[before:] == []  # every file is current: nothing fetched


def test_a_killed_pull_run_again_fetches_only_what_is_missing(
    hub: HubServer, hub_checkpoint: dict[str, bytes], tmp_path: Path
) -> None:
    repo, target = "wanserve-test/tiny-killed", tmp_path / "killed"
    hub.add_repo(repo, hub_checkpoint)
    hub.stall(SHARD)
    args = [sys.executable, "-m", "wanserve", "model", "pull", repo, "--any", "--out", str(target)]
    others = set(_checkpoint(hub_checkpoint)) - {SHARD}
    process = subprocess.Popen(args, env=_env(hub, tmp_path), stdout=subprocess.DEVNULL)
    try:
        assert hub.stalled.wait(60), "the pull never reached the stalled shard"
        deadline = time.monotonic() + 60
        while not others <= set(_pulled(target)) and time.monotonic() < deadline:
            time.sleep(0.05)  # the other files finish; the shard stays half-sent
    finally:
        os.kill(process.pid, signal.SIGKILL)  # a crash, a lost machine: nothing cleans up
        process.wait(30)
    kept = set(_pulled(target))
    assert kept == others
    hub.release()
    before = len(hub.fetched(repo))
    result = _pull(hub, tmp_path, repo, "--any", "--out", str(target))
    assert result.returncode == 0, result.stderr
    assert hub.fetched(repo)[before:] == [SHARD]  # not one of the files it had finished
    assert _pulled(target) == _checkpoint(hub_checkpoint)


def test_a_connection_dropped_mid_file_is_resumed_with_a_range_request(
    hub: HubServer, hub_checkpoint: dict[str, bytes], tmp_path: Path
) -> None:
    """huggingface_hub writes what it received in chunks of DOWNLOAD_CHUNK_SIZE (10 MiB), so
    the resumable part of a file is its whole chunks: the VAE's weights are made 24 MiB here and
    the connection drops after 12 MiB."""
    from huggingface_hub.constants import DOWNLOAD_CHUNK_SIZE

    repo, target, big = "wanserve-test/tiny-dropped", tmp_path / "dropped", "vae/big.safetensors"
    weights = safetensors_bytes({"noise": random.Random(0).randbytes(24 * 2**20)})
    hub.add_repo(repo, {**hub_checkpoint, big: weights})
    hub.cut_once(big)
    result = _pull(hub, tmp_path, repo, "--any", "--out", str(target))
    assert result.returncode == 0, result.stderr
    ranges = [rng for name, path, rng in hub.gets if name == repo and path == big]
    assert ranges == [None, f"bytes={DOWNLOAD_CHUNK_SIZE}-"]  # the whole chunk it had kept
    assert _pulled(target) == {**_checkpoint(hub_checkpoint), big: weights}


def test_a_repo_missing_a_shard_is_refused_by_the_check(
    hub: HubServer, hub_checkpoint: dict[str, bytes], tmp_path: Path
) -> None:
    repo, target = "wanserve-test/tiny-broken", tmp_path / "broken"
    hub.add_repo(repo, {p: data for p, data in hub_checkpoint.items() if p != SHARD})
    result = _pull(hub, tmp_path, repo, "--any", "--out", str(target))
    assert result.returncode == 1
    assert f"error: {target} is not a complete checkpoint:" in result.stderr
    assert f"  {SHARD}: missing (diffusion_pytorch_model.safetensors.index.json maps" in (
        result.stderr
    )
    assert "complete (" not in result.stdout


def test_unknown_repos_are_refused_and_hub_errors_reported(hub: HubServer, tmp_path: Path) -> None:
    refused = _pull(hub, tmp_path, "someone/other-model")
    assert refused.returncode == 2 and hub.fetched("someone/other-model") == []
    assert refused.stderr.startswith("error: repo_id='someone/other-model' is invalid: must be")
    assert T2V_REPO in refused.stderr and "--any" in refused.stderr
    missing = _pull(hub, tmp_path, "someone/other-model", "--any")
    assert missing.returncode == 1
    assert missing.stderr.startswith("error: could not pull someone/other-model: ")


def test_model_check_says_complete_or_lists_the_faults(
    hub_checkpoint: dict[str, bytes], tmp_path: Path
) -> None:
    for path, data in _checkpoint(hub_checkpoint).items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_bytes(data)
    runner = CliRunner()
    complete = runner.invoke(app, ["model", "check", str(tmp_path)])
    assert complete.exit_code == 0 and complete.stdout == f"{tmp_path}: complete\n"
    (tmp_path / SHARD).unlink()
    broken = runner.invoke(app, ["model", "check", str(tmp_path)])
    assert broken.exit_code == 1 and SHARD in broken.stderr
