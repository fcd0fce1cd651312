"""The Wan2.2 engine: runs a VideoSpec in one process or under torchrun (`engine` extra).

Importing the package is cheap: the names below load their modules (and torch) on first use, so
the service can call `ensure_tiny_model` or `open_sink` without importing torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "CommandLoop",
    "Engine",
    "EventSink",
    "OutputTarget",
    "ParallelPlan",
    "build_tiny_model",
    "ensure_tiny_model",
    "open_sink",
    "run_job",
]

_HOMES = {
    "CommandLoop": "serve",
    "Engine": "engine",
    "OutputTarget": "outputs",
    "EventSink": "sinks",
    "open_sink": "sinks",
    "ParallelPlan": "parallel",
    "build_tiny_model": "tiny",
    "ensure_tiny_model": "tiny",
    "run_job": "job",
}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'wanserve.engine' has no attribute {name!r}")
    return getattr(importlib.import_module(f"wanserve.engine.{_HOMES[name]}"), name)
