"""The pod command: a POSIX shell line that writes the spec to a file and execs torchrun.

The spec travels in the pod's environment (`WANSERVE_SPEC`, JSON) so the manifest alone
reproduces the run (`kubectl apply` needs no side object). torchrun takes its rendezvous from
the variables the training operator injects (`PET_NNODES`, `PET_NODE_RANK`,
`PET_NPROC_PER_NODE`, `PET_MASTER_ADDR`, `PET_MASTER_PORT`), so the same line runs on the
Master and on every Worker. A draining job's line runs `engine serve` instead: no spec, its
commands from the Redis list in `WANSERVE_COMMANDS`, an idle exit.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

__all__ = [
    "ENV_COMMANDS",
    "ENV_EVENTS",
    "ENV_GENERATE_PY_CONFIG",
    "ENV_SPEC",
    "Parallelism",
    "engine_script",
    "generate_py_script",
    "serve_script",
]

ENV_SPEC = "WANSERVE_SPEC"
ENV_EVENTS = "WANSERVE_EVENTS"
ENV_GENERATE_PY_CONFIG = "WANSERVE_GENERATE_PY_CONFIG"
ENV_COMMANDS = "WANSERVE_COMMANDS"

# `mktemp` keeps two processes of one machine (the local multi-"pod" test) apart.
_WRITE_SPEC = 'set -eu\nspec="$(mktemp)"\nprintf \'%s\' "$WANSERVE_SPEC" > "$spec"\n'


@dataclass(frozen=True, slots=True)
class Parallelism:
    """How the engine splits one video over the job's ranks."""

    ulysses: int = 1
    cfg_parallel: bool = False
    fsdp: bool = False

    def flags(self) -> list[str]:
        out = ["--ulysses", str(self.ulysses)] if self.ulysses > 1 else []
        out += ["--cfg-parallel"] if self.cfg_parallel else []
        return out + (["--fsdp"] if self.fsdp else [])


def engine_script(parallelism: Parallelism) -> str:
    """`sh -c` text: torchrun (reading PET_*) running `wanserve.engine run` on the spec."""
    argv = ["-m", "wanserve.engine", "run", "--spec", '"$spec"', "--events", '"$WANSERVE_EVENTS"']
    return _WRITE_SPEC + "exec torchrun " + " ".join(argv + parallelism.flags()) + "\n"


def serve_script(model: str, idle_s: float, parallelism: Parallelism) -> str:
    """`sh -c` text: torchrun (reading PET_*) running `wanserve.engine serve` on `model`, its
    commands from `$WANSERVE_COMMANDS`, stopping after `idle_s` without one."""
    argv = ["-m", "wanserve.engine", "serve", "--model", shlex.quote(model)]
    argv += ["--events", '"$WANSERVE_EVENTS"', "--commands", '"$WANSERVE_COMMANDS"']
    argv += ["--idle-exit-s", f"{idle_s:g}"]
    return "set -eu\nexec torchrun " + " ".join(argv + parallelism.flags()) + "\n"


def generate_py_script() -> str:
    """`sh -c` text: wanserve's generate.py runner on the operator's generate.py.

    The runner (`python -m wanserve.engine.generate_py`) maps the spec onto generate.py's flags
    from its config (`WANSERVE_GENERATE_PY_CONFIG`, the operator's GeneratePyConfig as JSON),
    launches torchrun itself for a world size > 1 and turns generate.py's progress into engine
    events. On several nodes every pod runs it; torchrun joins them through the operator's
    PET_* variables, and only node 0 (`--node-rank`, from PET_NODE_RANK) reports.
    """
    write_config = 'config="$(mktemp)"\nprintf \'%s\' "$WANSERVE_GENERATE_PY_CONFIG" > "$config"\n'
    argv = ["--spec", '"$spec"', "--config", '"$config"', "--events", '"$WANSERVE_EVENTS"']
    argv += ["--node-rank", '"${PET_NODE_RANK:-0}"']
    return (
        _WRITE_SPEC
        + write_config
        + "exec python -m wanserve.engine.generate_py "
        + " ".join(argv)
        + "\n"
    )
