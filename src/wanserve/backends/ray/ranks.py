"""One rank of a Ray Serve replica's engine: a Ray actor holding a loaded `Engine`.

A replica starts `ranks` of these in its placement group (one bundle each). Rank 0 opens the
rendezvous (`endpoint`), every rank joins the same `torch.distributed` group with the variables
torchrun would set (`load`), and then each spec is run on every rank at once (`run`, a streaming
generator of the rank's events as JSON). The actor is threaded (two calls at a time) so that
`cancel` reaches the engine's cancel token while `run` is busy; the engine stops at its next
step on every rank (they agree on it each step). Torch and the engine are imported inside the
actor only: the dispatcher, which builds the application, stays torch-free.
"""

from __future__ import annotations

import os
import queue
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wanserve.backends.ray.config import AppArgs
from wanserve.domain.events import EngineEvent

if TYPE_CHECKING:
    from wanserve.engine.control import CancelToken
    from wanserve.engine.engine import Engine
    from wanserve.engine.rank_context import RankContext

__all__ = ["RankActor", "ray_node_id"]

_END = object()


class _QueueSink:
    """An EventSink handing the events of the running spec to the `run` generator."""

    def __init__(self) -> None:
        self.events: queue.Queue[Any] = queue.Queue()

    def emit(self, event: EngineEvent) -> None:
        self.events.put(event)

    def close(self) -> None:
        self.events.put(_END)


class RankActor:
    """Rank `rank` of a `world`-rank engine group (see the module docstring)."""

    def __init__(self, rank: int, world: int, args: dict[str, Any]) -> None:
        self.args = AppArgs.model_validate(args)
        os.environ.update(self.args.env)
        self.rank, self.world = rank, world
        self._ctx: RankContext | None = None
        self._engine: Engine | None = None
        self._token: CancelToken | None = None
        self._running: str | None = None
        self._lock = threading.Lock()  # guards _running and the token
        self._one_at_a_time = threading.Lock()  # a run waits for the one before to finish

    def endpoint(self) -> tuple[str, int]:
        """Where the group meets: this node's address and a free port (called on rank 0)."""
        import ray

        host: str = ray.util.get_node_ip_address()  # type: ignore[no-untyped-call]
        with socket.socket() as probe:
            probe.bind((host, 0))
            port: int = probe.getsockname()[1]
        return host, port

    def load(self, master: tuple[str, int]) -> dict[str, Any]:
        """Join the group at `master` and load the model; what loaded, for the replica."""
        from wanserve.engine.control import CancelToken
        from wanserve.engine.engine import Engine
        from wanserve.engine.loading import resolve_checkpoint
        from wanserve.engine.parallel import ParallelPlan
        from wanserve.engine.rank_context import join_group

        # Ray makes this actor's GPUs (its bundle's) the only visible ones: its device is cuda:0.
        os.environ.update(
            RANK=str(self.rank),
            WORLD_SIZE=str(self.world),
            LOCAL_RANK="0",
            MASTER_ADDR=master[0],
            MASTER_PORT=str(master[1]),
        )
        args = self.args
        self._ctx = join_group(args.device)
        plan = ParallelPlan(ulysses=args.ulysses, cfg_parallel=args.cfg_parallel, fsdp=args.fsdp)
        path = resolve_checkpoint(args.model, None, Path(args.models_dir))
        loras = Path(args.loras_dir) if args.loras_dir else None
        self._engine = Engine.load(self._ctx, path, plan, "auto", loras)
        self._token = CancelToken()
        return {
            "model": self._engine.info.card.id,
            "world_size": self._ctx.world_size,
            "node": ray_node_id(),
        }

    def run(self, spec: dict[str, Any], save_frames: str | None = None) -> Iterator[str]:
        """Run `spec` on this rank; yields its events (JSON), the last one terminal on rank 0.
        `save_frames`: where rank 0 also saves the decoded frames (.npy; for tests)."""
        sink = _QueueSink()
        frames = Path(save_frames) if save_frames else None
        worker = threading.Thread(target=self._run, args=(spec, sink, frames), daemon=True)
        worker.start()
        while (event := sink.events.get()) is not _END:
            yield event.model_dump_json()
        worker.join()

    def cancel(self, task_id: str) -> bool:
        """Stop `task_id` at its next step; False when it is not running here."""
        with self._lock:
            if self._token is None or self._running != task_id:
                return False
            self._token.cancel("cancel requested")
            return True

    def _run(self, raw: dict[str, Any], sink: _QueueSink, frames: Path | None) -> None:
        from wanserve.domain.spec import VideoSpec
        from wanserve.engine.reporter import Reporter

        assert self._ctx is not None and self._engine is not None and self._token is not None
        spec = VideoSpec.model_validate(raw)
        reporter = Reporter(sink, self._ctx.rank, spec.task_id)
        try:
            with self._one_at_a_time:
                self._run_one(spec, reporter, frames)
        finally:
            sink.close()

    def _run_one(self, spec: Any, reporter: Any, frames: Path | None) -> None:
        from wanserve.domain.errors import InvalidRequest
        from wanserve.engine.job import handle_failure

        assert self._ctx is not None and self._engine is not None and self._token is not None
        with self._lock:
            self._running = spec.task_id
            self._token.clear()
        try:
            if self._ctx.device.type == "cuda":  # the current device is per thread
                import torch

                torch.cuda.set_device(self._ctx.device)
            self._engine.run(spec, reporter, self._token, save_frames=frames)
        except InvalidRequest as exc:  # the same on every rank: the group keeps serving
            handle_failure(self._ctx, reporter, exc)
        except BaseException as exc:
            handle_failure(self._ctx, reporter, exc)
        finally:
            with self._lock:
                self._running = None


def ray_node_id() -> str:
    """The Ray node this process runs on."""
    import ray

    return str(ray.get_runtime_context().get_node_id())
