"""The generate.py runner: a VideoSpec through an operator's own Wan2.2 `generate.py`.

It turns the spec into a generate.py command line from a template, runs it (under torchrun when
it needs several processes), reads its log output, and reports the same events and exit codes
as the diffusers engine (docs/engine-generate-py.md). None of it imports torch.

- `command`: `GeneratePyConfig` (the template) and `build_invocation(spec, config)`, the pure
  mapping onto generate.py's flags;
- `runner`: `GeneratePyRunner`, from the command line to one terminal event;
- `tracker`: `ProgressTracker`, generate.py's logging and tqdm output read as events;
- `schedule`: Wan2.2's timestep schedule, for the steps' timesteps and the expert switch;
- `child_process`: the supervised process tree; `failure`: why a run failed;
- `video_probe`: the finished MP4 read back; `cli`: `python -m wanserve.engine.generate_py`.
"""

from wanserve.engine.generate_py.cli import main, run_from_files
from wanserve.engine.generate_py.command import (
    WAN_SUPPORTED_SIZES,
    GeneratePyConfig,
    Invocation,
    build_invocation,
    wan_task,
)
from wanserve.engine.generate_py.runner import GeneratePyRunner, exit_code_of

__all__ = [
    "WAN_SUPPORTED_SIZES",
    "GeneratePyConfig",
    "GeneratePyRunner",
    "Invocation",
    "build_invocation",
    "exit_code_of",
    "main",
    "run_from_files",
    "wan_task",
]
