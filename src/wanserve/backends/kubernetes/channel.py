"""A draining job's command channel on the queue's Redis: the dispatcher's side.

The keys of job NAME (prefix: queue.prefix):

    <prefix>:kjob:<NAME>:commands         the job's command lines: RPUSH here, BLPOP by its rank 0
    <prefix>:kjob:<NAME>:commands:closed  set by the engine when it stops (idle, or a signal),
                                          atomically with an empty list (engine/redis_commands.py)
    <prefix>:kjob:<NAME>:events           the engine's own events: loading, ready, and a failure
                                          outside a task
    <prefix>:engine:<task>:<attempt>      each run's events, as for a one-shot job (config.py)
    <prefix>:cancel:<task>:<attempt>      each run's cancel flag, polled by the engine while the
                                          run is on (an attempt's own: a retry is not cancelled)

`push` is a Lua script that refuses a closed list, so a command the engine will not read is
refused here (the run then starts another job) instead of waiting in a list nobody reads.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from wanserve.backends.kubernetes.config import events_stream
from wanserve.domain.spec import VideoSpec

__all__ = ["JobChannel", "cancel_key", "run_command"]

CLOSED_SUFFIX = ":closed"  # the engine's side: wanserve.engine.redis_commands.CLOSED_SUFFIX
_TTL_S = 24 * 3600  # the keys of a job that nobody cleaned up (its dispatcher died) expire

# KEYS: the list, its closed flag; ARGV: the command line, the list's TTL. 1: pushed; 0: closed.
_PUSH = """
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 1
"""


@dataclass(frozen=True, slots=True)
class JobChannel:
    """The Redis keys of one draining job (see the module docstring)."""

    prefix: str
    name: str

    @property
    def commands(self) -> str:
        return f"{self.prefix}:kjob:{self.name}:commands"

    @property
    def closed(self) -> str:
        return self.commands + CLOSED_SUFFIX

    @property
    def events(self) -> str:
        return f"{self.prefix}:kjob:{self.name}:events"

    async def push(self, redis: Any, command: dict[str, Any]) -> bool:
        """Queue `command` for the job's engine; False when the engine stopped taking any."""
        pushed = await redis.eval(_PUSH, 2, self.commands, self.closed, json.dumps(command), _TTL_S)
        return bool(pushed)

    async def forget(self, redis: Any) -> None:
        """Delete the job's keys (it ended)."""
        await redis.delete(self.commands, self.closed, self.events)


def cancel_key(prefix: str, task_id: str, attempt: int) -> str:
    return f"{prefix}:cancel:{task_id}:{attempt}"


def run_command(spec: VideoSpec, prefix: str, attempt: int) -> dict[str, Any]:
    """The `run` command of `spec` (task id and output already set) for its attempt: its events
    go to the attempt's stream, its cancel is the attempt's key."""
    task_id = spec.task_id or ""
    return {
        "op": "run",
        "spec": spec.model_dump(mode="json"),
        "events": events_stream(prefix, task_id, attempt),
        "cancel_key": cancel_key(prefix, task_id, attempt),
    }
