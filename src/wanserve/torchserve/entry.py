"""The module TorchServe loads from wanserve's `.mar` (its `--handler`): one WanHandler per worker.

TorchServe calls `handle(data, context)` for every batch, with `data` None for the first (the
model's load). wanserve must be installed in TorchServe's Python (its `python` on PATH).
"""

from __future__ import annotations

from typing import Any

from wanserve.torchserve.handler import WanHandler

_service = WanHandler()


def handle(data: list[dict[str, Any]] | None, context: Any) -> list[Any] | None:
    if not _service.initialized:
        _service.initialize(context)
    return _service.handle(data, context)
