"""The CLI tests' servers, one per session each.

`cli_server`: a real API server (uvicorn on 127.0.0.1, SQLite, the session's Valkey and a
dispatcher whose backend sleeps per step; API keys required: an admin key and a user's key).
The API commands run in-process through typer's CliRunner, with $WANSERVE_SERVER and
$WANSERVE_API_KEY in the environment, as a person's shell would set them.

`hub` (tests/fixtures/hub.py) with `hub_checkpoint`: the tiny Wan2.2 checkpoint as a hub repo
holds it, with sharded weights, for `wanserve model pull`.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from pydantic import SecretStr
from typer.testing import CliRunner, Result

from tests.api.dispatching import make_dispatcher
from tests.api.server import LiveServer, serve
from tests.fakes.backend import SleepyBackend
from tests.fixtures.hub import hub, repo_files  # noqa: F401 - the session's hub server
from wanserve.api.app import create_app
from wanserve.api.keys import create_api_key
from wanserve.artifacts.local import LocalArtifacts
from wanserve.cli import app
from wanserve.queue import make_queue
from wanserve.settings import ApiSettings, QueueSettings, Settings
from wanserve.store import make_store

STEP_S = 0.05  # the fake engine's time per denoising step
ADMIN_KEY = "ws-cli-tests-admin"
HUB_EXTRAS = {  # what a hub repo holds beside the checkpoint, which a pull leaves behind
    ".gitattributes": b"*.safetensors filter=lfs\n",
    "README.md": b"# tiny\n",
    "examples/i2v_input.JPG": b"\xff\xd8",
    "vae/diffusion_pytorch_model.bin": b"0",
}


@dataclass
class CliServer:
    live: LiveServer
    user_key: str
    user_key_id: str

    def wanserve(self, *args: str, key: str | None = None) -> Result:
        """`wanserve ARGS` against this server, as the user (or with `key`)."""
        env = {"WANSERVE_SERVER": self.live.base_url, "WANSERVE_API_KEY": key or self.user_key}
        return CliRunner().invoke(app, list(args), env=env)

    def admin(self, *args: str) -> Result:
        return self.wanserve(*args, key=ADMIN_KEY)


@pytest.fixture(scope="session")
def cli_server(tmp_path_factory: pytest.TempPathFactory, valkey_url: str) -> Iterator[CliServer]:
    root = tmp_path_factory.mktemp("cli-server")
    settings = Settings(
        data_dir=root,
        api=ApiSettings(require_keys=True, admin_key=SecretStr(ADMIN_KEY)),
        queue=QueueSettings(url=valkey_url, prefix=f"cli-{uuid.uuid4().hex[:8]}"),
    )
    user: dict[str, str] = {}

    async def build() -> Any:
        store = await make_store(settings)  # SQLite under root, migrated
        created = await create_api_key(store, "cli-user", now=time.time)
        user.update(secret=created.secret, id=created.key.id)
        queue = make_queue(settings)
        artifacts = LocalArtifacts(root / "artifacts")
        app = create_app(settings, store, queue, artifacts, sse_poll_s=0.2)
        backend = SleepyBackend(step_s=STEP_S)
        dispatcher = make_dispatcher(store, queue, artifacts, root / "work", backend=backend)

        async def close() -> None:
            await queue.close()
            await store.close()

        parts = {"store": store, "close": close, "stop": dispatcher.stop}
        return app, parts, [dispatcher.run()]

    with serve(build) as live:
        yield CliServer(live, user["secret"], user["id"])


@pytest.fixture(scope="session")
def hub_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """The tiny A14B checkpoint's files as a diffusers repo lays them out: transformer and
    text encoder in shards with their `*.safetensors.index.json`, plus files a pull must leave
    behind (README, an example image, a .bin duplicate of the VAE's weights)."""
    pytest.importorskip("diffusers")
    from diffusers import WanTransformer3DModel
    from transformers import UMT5EncoderModel

    from wanserve.domain.models import Layout
    from wanserve.engine.tiny import MARKER_FILE, build_tiny_model

    root = build_tiny_model(tmp_path_factory.mktemp("hub") / "tiny", Layout.A14B)
    (root / MARKER_FILE).unlink()  # a hub repo has no wanserve marker
    for name, model_class, weights in (
        ("transformer", WanTransformer3DModel, "diffusion_pytorch_model.safetensors"),
        ("text_encoder", UMT5EncoderModel, "model.safetensors"),
    ):
        model = model_class.from_pretrained(root / name)
        (root / name / weights).unlink()
        model.save_pretrained(root / name, max_shard_size="60KB")
    files = repo_files(root)
    assert sum(path.endswith(".safetensors.index.json") for path in files) == 2
    return {**files, **HUB_EXTRAS}
