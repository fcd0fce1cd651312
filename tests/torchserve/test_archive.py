"""`wanserve torchserve archive`: the `.mar` TorchServe loads, as torch-model-archiver writes it."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from wanserve.cli import app

pytest.importorskip("model_archiver")


def test_the_archive_names_the_handler_the_model_and_one_worker(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["torchserve", "archive", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    path = Path(result.output.strip())
    assert path == tmp_path / "wan2.2-tiny.mar"  # api.default_model, as TorchServe's model name
    with zipfile.ZipFile(path) as mar:
        manifest = json.loads(mar.read("MAR-INF/MANIFEST.json"))
        assert manifest["model"]["modelName"] == "wan2.2-tiny"
        handler = manifest["model"]["handler"]
        assert "def handle(" in mar.read(handler).decode()  # TorchServe's module entry point
        assert json.loads(mar.read("wanserve.json"))["model"] == "wan2.2-tiny"
        config = yaml.safe_load(mar.read(manifest["model"]["configFile"]))
    assert config["minWorkers"] == config["maxWorkers"] == 1  # one engine per model
    assert config["batchSize"] == 1


def test_an_existing_archive_is_kept_unless_forced(tmp_path: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["torchserve", "archive", "--out", str(tmp_path)]).exit_code == 0
    again = runner.invoke(app, ["torchserve", "archive", "--out", str(tmp_path)])
    assert again.exit_code == 2 and "--force" in again.output
    forced = runner.invoke(app, ["torchserve", "archive", "--out", str(tmp_path), "--force"])
    assert forced.exit_code == 0, forced.output


def test_an_unknown_model_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["torchserve", "archive", "--out", str(tmp_path / "store"), "--model", "nope"]
    )
    assert result.exit_code == 2 and "nope" in result.output
    assert not (tmp_path / "store").exists()
