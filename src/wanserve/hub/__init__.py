"""Checkpoints from a model hub: `pull_checkpoint` downloads a diffusers-layout Wan2.2 repo and
`check_checkpoint` tells whether a checkpoint directory is complete.

Only `pull` imports huggingface_hub, and only when called; `check` reads files and nothing else.
"""

from __future__ import annotations

from wanserve.hub.check import Problem, check_checkpoint, components
from wanserve.hub.pull import Pulled, allow_patterns, pull_checkpoint

__all__ = [
    "Problem",
    "Pulled",
    "allow_patterns",
    "check_checkpoint",
    "components",
    "pull_checkpoint",
]
