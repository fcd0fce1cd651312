"""One spec, start to finish, in this process (and its torchrun peers): what `run` does.

`run_job(...)` joins the group, loads the checkpoint, runs the spec, and turns every way it can
end into an event and an exit code: result (OK), cancelled (CANCELLED), invalid input (INVALID),
out of memory (OOM), any other error (FAILED). On a multi-rank failure the process ends with
`os._exit` so that no rank waits in a collective for a peer that is gone.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from wanserve.domain.errors import InvalidRequest
from wanserve.domain.events import ExitCode, Phase
from wanserve.domain.spec import VideoSpec
from wanserve.engine.control import (
    CancelToken,
    Watchdog,
    claim_abort,
    classify,
    flush_and_exit,
)
from wanserve.engine.engine import DtypeName, Engine, OutputTarget
from wanserve.engine.loading import resolve_checkpoint
from wanserve.engine.parallel import ParallelPlan
from wanserve.engine.rank_context import DevicePreference, RankContext, join_group
from wanserve.engine.redis_cancel import watch_redis_cancel
from wanserve.engine.reporter import Reporter
from wanserve.engine.sinks import EventSink, open_sink

__all__ = ["JobOptions", "handle_failure", "run_job"]

logger = logging.getLogger(__name__)

SpecFactory = Callable[[RankContext], VideoSpec]


@dataclass(frozen=True)
class JobOptions:
    plan: ParallelPlan
    models_dir: Path
    events: str | None = None  # an --events value
    device: DevicePreference = "auto"
    dtype: DtypeName = "auto"
    save_frames: Path | None = None
    loras_dir: Path | None = None  # LoRA adapters a spec may name: <loras_dir>/<name>/
    target: OutputTarget | None = None  # default: video.mp4 and poster.jpg in spec.output
    sink: EventSink | None = None  # overrides `events` (the CLI's progress bar)


def run_job(make_spec: SpecFactory, options: JobOptions) -> ExitCode:
    """Run the spec `make_spec` builds (after the group formed, so it can share a seed)."""
    token = CancelToken()
    token.install_signal_handlers()
    rank_ctx = join_group(options.device)
    sink = options.sink or open_sink(options.events)
    reporter = Reporter(sink, rank_ctx.rank)
    watchdog = Watchdog(rank_ctx).start()
    try:
        code = _run(rank_ctx, make_spec, options, reporter, token)
    except BaseException as exc:
        code = handle_failure(rank_ctx, reporter, exc)
    finally:
        watchdog.stop()
        sink.close()
    # The engine is gone with `_run`'s frame, but FSDP modules sit in reference cycles: free
    # the weights now, not during interpreter shutdown, which pages in ~0.1 GB of library code
    # for C++ static destructors on top of whatever is still held.
    gc.collect()
    if rank_ctx.is_distributed and code not in (ExitCode.OK, ExitCode.CANCELLED, ExitCode.INVALID):
        flush_and_exit(code)  # a peer may be stuck in a collective: never tear down the group
    rank_ctx.close()
    return code


def _run(
    rank_ctx: RankContext,
    make_spec: SpecFactory,
    options: JobOptions,
    reporter: Reporter,
    token: CancelToken,
) -> ExitCode:
    spec = make_spec(rank_ctx)
    reporter.task_id = spec.task_id  # errors from here on name the task too
    reporter.phase(Phase.LOADING)
    path = resolve_checkpoint(spec.model, spec.checkpoint, options.models_dir)
    engine = Engine.load(rank_ctx, path, options.plan, options.dtype, options.loras_dir)
    with watch_redis_cancel(reporter.sink, spec.task_id, token, enabled=rank_ctx.is_main):
        outcome = engine.run(spec, reporter, token, options.target, options.save_frames)
    return ExitCode.OK if outcome == "completed" else ExitCode.CANCELLED


def handle_failure(rank_ctx: RankContext, reporter: Reporter, exc: BaseException) -> ExitCode:
    """Report `exc` once for the whole group and return the exit code every rank should use."""
    if isinstance(exc, KeyboardInterrupt):
        exc = RuntimeError("interrupted")
    failure = classify(exc)
    if isinstance(exc, InvalidRequest):
        # Checks fail identically on every rank (rank 0 speaks for all), or were agreed on by
        # `agree_on_checks`, which marks the one rank that speaks.
        if getattr(exc, "speaker", rank_ctx.is_main):
            reporter.error(failure.code, failure.message, failure.retryable)
        return failure.exit_code
    logger.error("rank %d failed", rank_ctx.rank, exc_info=exc)
    record = claim_abort(rank_ctx, failure) if rank_ctx.is_distributed else None
    if record is None or record.rank == rank_ctx.rank:
        message = failure.message
        if rank_ctx.is_distributed:
            message = f"rank {rank_ctx.rank}: {message}"
        reporter.error(failure.code, message, failure.retryable)
        return failure.exit_code
    return record.failure.exit_code
