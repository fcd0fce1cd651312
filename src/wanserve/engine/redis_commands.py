"""A draining job's command channel on the queue's Redis: the engine's side (rank 0 reads it).

`serve --commands redis://host:port/db?list=KEY` takes its command lines (the warm engine
protocol of engine/commands.py) from the Redis list KEY instead of stdin: the dispatcher RPUSHes,
this BLPOPs. `KEY:closed` is the other half of the contract (the dispatcher's side:
backends/kubernetes/channel.py): set here, atomically with an empty list, when the engine stops
for idleness (or on a signal); the dispatcher's push refuses to add to a closed list. So a
command is either run by this engine or refused to the dispatcher, which then starts another job.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from wanserve.engine.sinks import redis_key_url

__all__ = ["CLOSED_SUFFIX", "RedisCommandChannel"]

logger = logging.getLogger(__name__)

CLOSED_SUFFIX = ":closed"
_CLOSED_TTL_S = 24 * 3600  # outlives any dispatcher that could still push to the job
_RETRY_S = 1.0  # after a failed read (Redis restarting): the idle clock keeps running

# KEYS: the list, its closed flag; ARGV: the flag's TTL. 1: closed; 0: a command is waiting.
_CLOSE_IF_EMPTY = """
if redis.call('LLEN', KEYS[1]) > 0 then return 0 end
redis.call('SET', KEYS[2], '1', 'EX', ARGV[1])
return 1
"""


class RedisCommandChannel:
    """CommandChannel over one Redis list (see the module docstring)."""

    def __init__(self, client: Any, key: str) -> None:
        self.client = client
        self.key = key
        self.closed_key = key + CLOSED_SUFFIX

    @classmethod
    def from_url(cls, url: str) -> RedisCommandChannel:
        import redis

        client, key = redis_key_url(
            url, "list", "commands", "a redis command channel", redis.Redis.from_url
        )
        return cls(client, key)

    def pop(self, timeout_s: float) -> str | None:
        try:
            reply = self.client.blpop([self.key], timeout=timeout_s)
        except Exception:
            logger.warning("reading commands from %s failed; retrying", self.key, exc_info=True)
            time.sleep(_RETRY_S)
            return None
        if reply is None:
            return None
        line = reply[1]
        return line.decode() if isinstance(line, bytes) else str(line)

    def close_if_empty(self) -> bool:
        try:
            closed = self.client.eval(_CLOSE_IF_EMPTY, 2, self.key, self.closed_key, _CLOSED_TTL_S)
        except Exception:  # not closed: keep serving, the next idle check tries again
            logger.warning("could not close %s", self.key, exc_info=True)
            return False
        return bool(closed)

    def close(self) -> None:
        try:
            self.client.set(self.closed_key, "1", ex=_CLOSED_TTL_S)
        except Exception:  # the dispatcher learns from the job's end instead
            logger.warning("could not close %s", self.key, exc_info=True)
