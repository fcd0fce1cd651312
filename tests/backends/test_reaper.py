"""The reaper passes its command's exit status through and ends the group on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil

from tests.conftest import subprocess_env


def _reaper(*command: str, parent: int | None = None) -> list[str]:
    parent_id = str(parent if parent is not None else os.getpid())
    return [
        sys.executable,
        "-m",
        "wanserve.backends.reaper",
        "--parent",
        parent_id,
        "--grace",
        "0.5",
        "--",
        *command,
    ]


def test_exit_status_of_the_command_is_passed_through() -> None:
    ok = subprocess.run(
        _reaper(sys.executable, "-c", "raise SystemExit(3)"), env=subprocess_env(), timeout=30
    )
    assert ok.returncode == 3
    killed = subprocess.run(
        _reaper(sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"),
        env=subprocess_env(),
        timeout=30,
    )
    assert killed.returncode == 128 + signal.SIGKILL


def test_a_command_is_required() -> None:
    result = subprocess.run(_reaper(), env=subprocess_env(), capture_output=True, timeout=30)
    assert result.returncode == 2 and b"a command is required" in result.stderr


def test_sigterm_ends_the_whole_group_even_what_ignores_it() -> None:
    stubborn = (
        "import signal, subprocess, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
        " subprocess.Popen([sys.executable, '-c', 'import signal, time;"
        " signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)']); time.sleep(600)"
    )
    reaper = subprocess.Popen(
        _reaper(sys.executable, "-c", stubborn), env=subprocess_env(), start_new_session=True
    )
    try:
        leader = psutil.Process(reaper.pid)
        deadline = time.monotonic() + 20
        while len(leader.children(recursive=True)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        members = leader.children(recursive=True)
        assert len(members) == 2
        reaper.send_signal(signal.SIGTERM)
        assert reaper.wait(15) == 128 + signal.SIGKILL  # the command had to be SIGKILLed
        _, alive = psutil.wait_procs(members, timeout=10)
        assert alive == []
    finally:
        reaper.kill()
        reaper.wait(10)


def test_a_parent_that_is_already_gone_starts_nothing() -> None:
    result = subprocess.run(
        _reaper(sys.executable, "-c", "print('ran')", parent=1),
        env=subprocess_env(),
        capture_output=True,
        timeout=30,
    )
    assert result.returncode == 128 + signal.SIGTERM and b"ran" not in result.stdout
