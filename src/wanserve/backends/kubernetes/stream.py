"""Read one attempt's engine events back from its Redis stream (resumable by entry id)."""

from __future__ import annotations

import logging
from typing import Any

from pydantic import ValidationError

from wanserve.domain.events import EngineEvent, parse_event

__all__ = ["EngineEventReader"]

log = logging.getLogger(__name__)

FIELD = b"event"  # the engine's RedisSink writes the JSON line under this field


class EngineEventReader:
    """XREAD from `key`, starting at the beginning (an adopted run replays what it missed)."""

    def __init__(self, redis: Any, key: str, last_id: str = "0-0") -> None:
        self.redis = redis
        self.key = key
        self.last_id = last_id

    async def read(self, block_ms: int | None = 1000, count: int = 200) -> list[EngineEvent]:
        """The events after `last_id`, waiting up to `block_ms` for the first (None: no wait)."""
        reply = await self.redis.xread({self.key: self.last_id}, count=count, block=block_ms)
        events: list[EngineEvent] = []
        for _stream, entries in reply or []:
            for entry_id, fields in entries:
                self.last_id = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
                raw = fields.get(FIELD) or fields.get(FIELD.decode())
                try:
                    events.append(parse_event(raw))
                except (ValidationError, TypeError):
                    log.warning("skipping an unreadable event in %s: %r", self.key, raw)
        return events
