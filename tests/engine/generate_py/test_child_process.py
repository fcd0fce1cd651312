"""The supervised child process: timely progress fragments, a stop that leaves no orphan."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import psutil

from tests.conftest import subprocess_env
from wanserve.engine.generate_py.child_process import ChildProcess

WAIT_S = 60.0

# A bar drawn without its trailing carriage return, then a long pause: the next redraw never comes.
DRAWS_AND_WAITS = (
    "import sys, time\n"
    "sys.stderr.write('\\r 50%|#####     | 1/2 [00:01<00:01,  1.00s/it]')\n"
    "sys.stderr.flush()\n"
    "time.sleep(60)\n"
)
# Starts a grandchild in a session of its own (as torchrun starts its workers), prints its pid.
SPAWNS_A_WORKER = (
    "import subprocess, sys, time\n"
    "w = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'],"
    " start_new_session=True)\n"
    "print(w.pid, flush=True)\n"
    "time.sleep(60)\n"
)


def _child(code: str) -> ChildProcess:
    return ChildProcess([sys.executable, "-c", code], subprocess_env(), Path.cwd(), grace_s=3.0)


def _first(child: ChildProcess, predicate: object) -> str:
    deadline = time.monotonic() + WAIT_S
    for fragment in child.fragments(threading.Event(), deadline):
        if callable(predicate) and predicate(fragment):
            return fragment
    raise AssertionError("the fragment never came")


def test_a_drawn_bar_is_handed_out_before_its_next_redraw() -> None:
    with _child(DRAWS_AND_WAITS) as child:
        bar = _first(child, lambda f: "1/2" in f)
        assert child.returncode is None  # still running: the bar was not waiting for a \r
    assert bar.strip().startswith("50%|")


def test_stop_ends_descendants_in_other_sessions() -> None:
    with _child(SPAWNS_A_WORKER) as child:
        worker = psutil.Process(int(_first(child, str.isdigit)))
        assert worker.is_running()
    assert child.returncode is not None
    assert not worker.is_running() or worker.status() == psutil.STATUS_ZOMBIE


def test_cancel_ends_the_fragments_at_once() -> None:
    cancel = threading.Event()
    with _child(DRAWS_AND_WAITS) as child:
        cancel.set()
        assert list(child.fragments(cancel, time.monotonic() + WAIT_S)) == []
        assert child.returncode is None
