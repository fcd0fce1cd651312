"""A multi-node predictor's torch.distributed group: one head pod and `nnodes - 1` worker pods
(decision 0013).

Every pod carries torchrun's own variables (`PET_NNODES`, `PET_NPROC_PER_NODE`,
`PET_MASTER_ADDR`, `PET_MASTER_PORT`, `PET_NODE_RANK`), which torchrun turns into each rank's
`MASTER_ADDR`, `MASTER_PORT`, `RANK` and `WORLD_SIZE`. The head pod runs the KServe model
server: its warm pool launches the engine's node-0 ranks under torchrun with those values
(`Group.options`), so global rank 0, the rank that reads the commands and reports, is in the
pod that takes the requests. A worker pod runs `worker_script`: torchrun with the same engine
arguments, its node rank from its StatefulSet pod index + 1; its ranks load the model and then
wait for rank 0's commands in the rendezvous store (engine/serve.py), so they need no traffic.

Torch- and kserve-free: the render (`wanserve k8s render --backend kserve --nnodes N`) builds
the pods' commands from here too.
"""

from __future__ import annotations

import dataclasses
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from wanserve.backends.process import LocalOptions
from wanserve.domain.errors import InvalidRequest

__all__ = [
    "ENV_NNODES",
    "ENV_NODE_RANK",
    "ENV_POD_INDEX",
    "MASTER_PORT",
    "Group",
    "GroupOptions",
    "worker_script",
]

ENV_NNODES = "PET_NNODES"
ENV_NPROC = "PET_NPROC_PER_NODE"
ENV_MASTER_ADDR = "PET_MASTER_ADDR"
ENV_MASTER_PORT = "PET_MASTER_PORT"
ENV_NODE_RANK = "PET_NODE_RANK"
ENV_POD_INDEX = "WANSERVE_POD_INDEX"  # a worker pod's StatefulSet index (the downward API)
MASTER_PORT = 29500  # torchrun's default: the head's rendezvous store


@dataclass(frozen=True)
class Group:
    """The pods' group as torchrun's variables describe it."""

    nnodes: int
    nproc_per_node: int
    master_addr: str
    master_port: int = MASTER_PORT
    node_rank: int = 0

    def env(self) -> dict[str, str]:
        """torchrun's variables for this pod (a worker's node rank comes from its pod index)."""
        return {
            ENV_NNODES: str(self.nnodes),
            ENV_NPROC: str(self.nproc_per_node),
            ENV_MASTER_ADDR: self.master_addr,
            ENV_MASTER_PORT: str(self.master_port),
        }

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Group | None:
        """The group this process's pod belongs to; None for a pod of its own (no
        `PET_NNODES`, or 1). Raises InvalidRequest naming a variable that breaks a rule."""
        nnodes = _int(env, ENV_NNODES, "1")
        if nnodes <= 1:
            return None
        if not env.get(ENV_MASTER_ADDR):
            raise InvalidRequest(ENV_MASTER_ADDR, None, "required with PET_NNODES > 1")
        group = cls(
            nnodes=nnodes,
            nproc_per_node=_int(env, ENV_NPROC, "1"),
            master_addr=env[ENV_MASTER_ADDR],
            master_port=_int(env, ENV_MASTER_PORT, str(MASTER_PORT)),
            node_rank=_int(env, ENV_NODE_RANK, "0"),
        )
        if not 0 <= group.node_rank < nnodes:
            raise InvalidRequest(ENV_NODE_RANK, group.node_rank, f"must be in [0, {nnodes})")
        return group

    def options(self, base: LocalOptions) -> GroupOptions:
        """`base` (the warm pool's engine options), launching this node's ranks in the group.
        Only node 0 runs the model server, so only its ranks are launched this way."""
        if self.node_rank != 0:
            raise InvalidRequest(
                ENV_NODE_RANK,
                self.node_rank,
                "the model server runs on node 0 (the head pod); workers run worker_script",
            )
        if base.nproc != self.nproc_per_node:
            raise InvalidRequest(
                "engine.nproc", base.nproc, f"must equal {ENV_NPROC}={self.nproc_per_node}"
            )
        fields = {f.name: getattr(base, f.name) for f in dataclasses.fields(base)}
        return GroupOptions(**fields, group=self)


@dataclass(frozen=True, slots=True)
class GroupOptions(LocalOptions):
    """LocalOptions whose engine is node 0 of a multi-node torchrun group (static rendezvous
    at the head's address), even with one process per node."""

    group: Group | None = None

    def launch(self, engine: Sequence[str]) -> list[str]:
        group = self.group
        assert group is not None
        launcher = ["-m", "torch.distributed.run", "--nnodes", str(group.nnodes)]
        launcher += ["--node-rank", str(group.node_rank), "--nproc-per-node", str(self.nproc)]
        launcher += ["--master-addr", group.master_addr, "--master-port", str(group.master_port)]
        return [self.python, *launcher, *engine]


def worker_script(engine: Sequence[str]) -> str:
    """`sh -c` text of a worker pod: node rank = its pod index + 1 (node 0 is the head), then
    torchrun (reading PET_*) on the engine's arguments (`LocalOptions.engine_args`)."""
    rank = f'export {ENV_NODE_RANK}="$(( ${{{ENV_POD_INDEX}}} + 1 ))"\n'
    return "set -eu\n" + rank + "exec torchrun " + shlex.join(engine) + "\n"


def _int(env: Mapping[str, str], name: str, default: str) -> int:
    value = env.get(name) or default
    try:
        return int(value)
    except ValueError:
        raise InvalidRequest(name, value, "must be an integer") from None
