"""The OpenAPI document describes every answer the server sends: schemathesis, every check.

The schemathesis CLI runs as an operator runs it (`schemathesis run URL --checks all`) against
real parts: uvicorn, a SQLite store, a Valkey queue, and the dispatcher with the instant fake
backend (so a created video ends and its event stream closes). Seeded and bounded. Nothing is
excluded: a check that reports something is fixed in the server or the document, not here. The
hooks (`tests/api/schemathesis_hooks.py`) only draw real images where the document asks for one.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from tests.api.dispatching import make_dispatcher
from tests.api.server import LiveServer, serve
from tests.conftest import ROOT, subprocess_env
from wanserve.api.app import create_app
from wanserve.artifacts.local import LocalArtifacts
from wanserve.queue import make_queue
from wanserve.settings import ApiSettings, QueueSettings, Settings
from wanserve.store import make_store

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(180)]

SEED = 20260101
ADMIN_KEY = "ws-contract-admin"


def contract_server(root: Path, valkey_url: str, **api: Any) -> Any:
    settings = Settings(
        data_dir=root,
        queue=QueueSettings(url=valkey_url, prefix=f"contract-{uuid.uuid4().hex[:8]}"),
        api=ApiSettings(**api),
    )

    async def build() -> Any:
        store = await make_store(settings)
        queue = make_queue(settings)
        artifacts = LocalArtifacts(root / "artifacts")
        app = create_app(settings, store, queue, artifacts, time.time, sse_poll_s=0.2)
        dispatcher = make_dispatcher(store, queue, artifacts, root / "work")

        async def close() -> None:
            await queue.close()
            await store.close()

        return app, {"close": close, "stop": dispatcher.stop}, [dispatcher.run()]

    return serve(build)


@pytest.fixture(scope="module")
def open_server(tmp_path_factory: pytest.TempPathFactory, valkey_url: str) -> Iterator[LiveServer]:
    """A server on loopback, as `wanserve up` runs: keys optional."""
    with contract_server(tmp_path_factory.mktemp("open"), valkey_url) as live:
        yield live


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory: pytest.TempPathFactory, valkey_url: str) -> Iterator[LiveServer]:
    """A server that requires keys; ADMIN_KEY is one."""
    root = tmp_path_factory.mktemp("keyed")
    api = {"require_keys": True, "admin_key": SecretStr(ADMIN_KEY)}
    with contract_server(root, valkey_url, **api) as live:
        yield live


def schemathesis(server: LiveServer, cwd: Path, *options: str) -> subprocess.CompletedProcess[str]:
    """`schemathesis run` with every check and a fixed seed; `options` bound or add to it."""
    command = [
        *(sys.executable, "-m", "schemathesis.cli", "run", f"{server.base_url}/openapi.json"),
        *("--checks", "all", "--seed", str(SEED), "--workers", "1", "--no-color", *options),
    ]
    env = subprocess_env(SCHEMATHESIS_HOOKS="tests.api.schemathesis_hooks")
    env["PYTHONPATH"] = f"{ROOT}:{env['PYTHONPATH']}"
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=170)


def assert_no_issues(server: LiveServer, run: subprocess.CompletedProcess[str]) -> None:
    assert run.returncode == 0, run.stdout[-20_000:] + run.stderr[-5_000:]
    document = httpx.get(f"{server.base_url}/openapi.json").json()
    operations = sum(len(methods) for methods in document["paths"].values())
    assert f"Tested: {operations}" in run.stdout  # every operation, none skipped


def test_every_answer_of_an_open_server_is_documented(
    open_server: LiveServer, tmp_path: Path
) -> None:
    assert_no_issues(open_server, schemathesis(open_server, tmp_path, "--max-examples", "6"))


def test_a_server_that_requires_keys_answers_as_documented_with_a_key(
    keyed_server: LiveServer, tmp_path: Path
) -> None:
    """Also checks that each operation refuses requests without a key or with a wrong one.

    The coverage phase is left to the open server's run: its boundary values do not depend on
    keys, and it is most of a run's time.
    """
    key = ("-H", f"Authorization: Bearer {ADMIN_KEY}")
    phases = ("--phases", "fuzzing,stateful", "--max-examples", "5")
    assert_no_issues(keyed_server, schemathesis(keyed_server, tmp_path, *key, *phases))


def test_a_server_that_requires_keys_documents_its_401s(
    keyed_server: LiveServer, tmp_path: Path
) -> None:
    run = schemathesis(keyed_server, tmp_path, "--phases", "fuzzing", "--max-examples", "3")
    assert_no_issues(keyed_server, run)
    assert "401/403" in run.stdout  # schemathesis saw the 401s (and warns of them)
