"""Why a generate.py run failed: the cause named from the tail of its output, and the code."""

from __future__ import annotations

from wanserve.engine.generate_py.failure import failure_of


def test_cause_is_the_first_worker_exception_not_torchruns_summary() -> None:
    tail = [
        "Traceback (most recent call last):",
        '  File "generate.py", line 10, in <module>',
        "RuntimeError: rank one broke",
        "[rank0]: torch.distributed.DistBackendError: Connection closed by peer",
        "torch.distributed.elastic.multiprocessing.errors.ChildFailedError: ",
        "generate.py FAILED",
    ]
    failure = failure_of(1, tail)
    assert failure is not None and failure.code == "engine_error"
    assert failure.message.splitlines()[0] == (
        "generate.py exited with code 1: RuntimeError: rank one broke"
    )
    assert failure.message.splitlines()[-1] == "generate.py FAILED"


def test_causes_name_oom_argparse_and_signals() -> None:
    oom = failure_of(1, ["torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2 GiB"])
    assert oom is not None and oom.code == "oom"
    usage = ["usage: generate.py [-h]", "generate.py: error: argument --size: invalid choice"]
    refused = failure_of(2, usage)
    assert refused is not None and refused.code == "invalid_spec"
    assert "error: argument --size: invalid choice" in refused.message.splitlines()[0]
    killed = failure_of(-9, [])
    assert killed is not None
    assert killed.message == "generate.py was killed by SIGKILL: no exception in its output"
    assert failure_of(0, ["RuntimeError: ignored"]) is None
