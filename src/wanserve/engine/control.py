"""Cancel and failure across ranks: every rank stops together, and in bounded time.

Cancel is cooperative. A signal (SIGTERM/SIGINT), a warm-engine `cancel` command or the Redis
cancel key sets this rank's flag; after every denoising step all ranks all-reduce their flags
(`agree_to_stop`), so one rank's cancel stops every rank at the same step, between collectives.

Failure is not: a rank that raises may leave its peers blocked inside a collective. So the
failing rank first writes an abort record to the store (first writer wins: the record names the
cause), and every rank runs a watchdog thread that polls the store and, when a peer's record
appears, gives the main thread a grace period and then ends the process with the peer's exit
code. The store lives outside the collectives (torchrun's agent hosts it), so it always answers.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
from dataclasses import dataclass
from types import FrameType
from typing import Any

import torch
import torch.distributed as dist

from wanserve.domain.errors import InvalidRequest
from wanserve.domain.events import ExitCode
from wanserve.engine.rank_context import RankContext

__all__ = [
    "AbortRecord",
    "CancelToken",
    "RankFailure",
    "Watchdog",
    "agree_to_stop",
    "claim_abort",
    "classify",
    "flush_and_exit",
]

logger = logging.getLogger(__name__)

ABORT_KEY = "abort"


class CancelToken:
    """This rank's cancel flag; thread- and signal-safe."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason = "cancelled"

    def cancel(self, reason: str = "cancelled") -> None:
        self.reason = reason
        self._event.set()

    def clear(self) -> None:
        self._event.clear()
        self.reason = "cancelled"

    @property
    def is_cancelled(self) -> bool:
        return self._event.is_set()

    def install_signal_handlers(self) -> None:
        """SIGTERM and SIGINT cancel at the next step; a second SIGINT interrupts at once."""

        def on_signal(signum: int, frame: FrameType | None) -> None:  # noqa: ARG001
            name = signal.Signals(signum).name
            if self.is_cancelled and signum == signal.SIGINT:
                raise KeyboardInterrupt
            self.cancel(f"received {name}")

        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, on_signal)


def agree_to_stop(rank_ctx: RankContext, token: CancelToken) -> bool:
    """True on every rank when any rank's token is cancelled (one all-reduce per call)."""
    if not rank_ctx.is_distributed:
        return token.is_cancelled
    flag = torch.tensor([1 if token.is_cancelled else 0], device=rank_ctx.device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return bool(flag.item())


@dataclass(frozen=True)
class RankFailure:
    """What went wrong on one rank, as the events and exit codes say it."""

    code: str  # "oom", "invalid_spec", "engine_error"
    message: str
    exit_code: ExitCode
    retryable: bool


@dataclass(frozen=True)
class AbortRecord:
    rank: int
    failure: RankFailure

    def dumps(self) -> str:
        f = self.failure
        return json.dumps(
            {
                "rank": self.rank,
                "code": f.code,
                "message": f.message,
                "exit_code": int(f.exit_code),
                "retryable": f.retryable,
            }
        )

    @classmethod
    def loads(cls, raw: bytes | str) -> AbortRecord:
        data = json.loads(raw)
        failure = RankFailure(
            data["code"], data["message"], ExitCode(data["exit_code"]), data["retryable"]
        )
        return cls(int(data["rank"]), failure)


def classify(exc: BaseException) -> RankFailure:
    """An exception as a RankFailure: OOM, invalid input, or any other engine error."""
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, torch.OutOfMemoryError | MemoryError):
        return RankFailure("oom", f"out of memory: {text}", ExitCode.OOM, True)
    if isinstance(exc, InvalidRequest):
        return RankFailure("invalid_spec", str(exc), ExitCode.INVALID, False)
    return RankFailure("engine_error", text, ExitCode.FAILED, False)


def claim_abort(rank_ctx: RankContext, failure: RankFailure) -> AbortRecord:
    """Publish this rank's failure unless a peer's came first; returns the record that won."""
    mine = AbortRecord(rank_ctx.rank, failure)
    try:
        current = rank_ctx.store.compare_set(ABORT_KEY, "", mine.dumps())
        return AbortRecord.loads(bytes(current).decode())
    except Exception:
        logger.exception("could not publish the abort record")
        return mine


class Watchdog:
    """Ends this process when a peer publishes an abort record and we stay blocked.

    `grace_s` lets the main thread stop on its own first (a gloo peer that died usually makes
    the pending collective raise at once); after it the thread calls `os._exit`.
    """

    def __init__(self, rank_ctx: RankContext, grace_s: float = 3.0, poll_s: float = 0.2) -> None:
        self._rank_ctx = rank_ctx
        self._grace_s = grace_s
        self._poll_s = poll_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="wanserve-watchdog", daemon=True)

    def start(self) -> Watchdog:
        if self._rank_ctx.is_distributed:
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self._poll_s):
            record = self._peer_record()
            if record is None:
                continue
            if self._stop.wait(self._grace_s):
                return
            logger.error(
                "rank %d failed (%s); stopping rank %d",
                record.rank,
                record.failure.message,
                self._rank_ctx.rank,
            )
            flush_and_exit(record.failure.exit_code)

    def _peer_record(self) -> AbortRecord | None:
        try:
            if not self._rank_ctx.store.check([ABORT_KEY]):
                return None
            record = AbortRecord.loads(bytes(self._rank_ctx.store.get(ABORT_KEY)).decode())
        except Exception:
            logger.error("lost the control store; stopping rank %d", self._rank_ctx.rank)
            flush_and_exit(ExitCode.FAILED)
        return None if record.rank == self._rank_ctx.rank else record


def flush_and_exit(code: int) -> Any:
    import sys

    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: S110 - exiting anyway
            pass
    os._exit(int(code))
