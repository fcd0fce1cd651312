"""`wanserve up` settings and its refusal to serve an open API on a public address."""

from __future__ import annotations

from pathlib import Path

import pytest

from wanserve.backends.factory import make_backend
from wanserve.backends.local import LocalBackend
from wanserve.backends.warm import WarmPoolBackend
from wanserve.cli.embedded import open_mode_refusal, up_settings
from wanserve.settings import Settings


def test_flags_override_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("WANSERVE_API__PORT", "9999")
    monkeypatch.setenv("WANSERVE_DISPATCH__CAPACITY", "3")
    settings = up_settings(host="127.0.0.1", port=8123, data_dir=tmp_path, allow_open=False)
    assert settings.api.port == 8123 and settings.data_dir == tmp_path.resolve()
    assert settings.dispatch.capacity == 3


@pytest.mark.parametrize(
    ("host", "require_keys", "allow_open", "refused"),
    [
        ("127.0.0.1", False, False, False),  # loopback may run open
        ("0.0.0.0", None, False, False),  # keys required by default off loopback
        ("0.0.0.0", False, False, True),  # open on a public address: refused
        ("0.0.0.0", False, True, False),  # ... unless explicitly allowed
    ],
)
def test_open_api_on_a_public_address_is_refused_unless_allowed(
    host: str, require_keys: bool | None, allow_open: bool, refused: bool
) -> None:
    settings = Settings(
        api={
            "host": host,
            "require_keys": require_keys,
            "allow_open": allow_open,
        }
    )
    reason = open_mode_refusal(settings)
    assert (reason is not None) == refused
    if reason:
        assert host in reason and "--allow-open" in reason


def test_make_backend_builds_the_local_backend_or_the_warm_pool(tmp_path: Path) -> None:
    local = make_backend(Settings(data_dir=tmp_path, engine={"nproc": 2}))
    assert isinstance(local, LocalBackend) and local.gpus_per_run == 2
    env = local.options.env
    assert env["WANSERVE_ENGINE__MODELS_DIR"] == str(tmp_path / "models")
    warm = make_backend(Settings(data_dir=tmp_path, engine={"warm": True}))
    assert isinstance(warm, WarmPoolBackend)
