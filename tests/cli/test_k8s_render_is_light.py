"""`wanserve k8s render` imports none of the heavy libraries of the backends it renders for."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import subprocess_env

HEAVY = ("kserve", "torch", "ray", "kubernetes")


@pytest.mark.parametrize(
    ("backend", "kind"), [("ray", "RayService"), ("kserve", "InferenceService")]
)
def test_render_imports_nothing_heavy(backend: str, kind: str, tmp_path: Path) -> None:
    script = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from wanserve.cli import app\n"
        f"args = ['k8s', 'render', '--backend', {backend!r}, '--model', 'm']\n"
        "result = CliRunner().invoke(app, args)\n"
        "assert result.exit_code == 0, result.output\n"
        f"assert 'kind: {kind}' in result.output\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=tmp_path,
    ).stdout
    assert out.strip() == "[]"
