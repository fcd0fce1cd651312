"""What each part loads when imported: the API and the worker never load torch (the engine runs
in processes of its own), and the worker's parts do not load the web framework."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import subprocess_env

HEAVY = ("torch", "diffusers", "ray", "kserve", "kubernetes", "fastapi")


def _loaded(module: str) -> list[str]:
    code = f"import sys, {module}\nprint(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code], env=subprocess_env(), capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


@pytest.mark.parametrize(
    ("module", "allowed"),
    [
        ("wanserve.api.app", {"fastapi"}),
        ("wanserve.cli", set()),
        ("wanserve.services", set()),
        ("wanserve.dispatch.dispatcher", set()),
        ("wanserve.backends.factory", set()),
        ("wanserve.webhooks.sender", set()),
    ],
)
def test_a_part_loads_only_what_it_needs(module: str, allowed: set[str]) -> None:
    assert set(_loaded(module)) <= allowed
