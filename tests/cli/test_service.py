"""`wanserve up` settings and its refusal to serve an open API on a public address."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from wanserve.backends.factory import make_backend
from wanserve.backends.local import LocalBackend
from wanserve.backends.warm import WarmPoolBackend
from wanserve.cli.embedded import open_mode_refusal, up_settings
from wanserve.domain.errors import InvalidRequest
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


def test_make_backend_builds_the_warm_pool_by_default_or_the_local_backend(
    tmp_path: Path,
) -> None:
    warm = make_backend(Settings(data_dir=tmp_path, engine={"nproc": 2}))
    assert isinstance(warm, WarmPoolBackend) and warm.gpus_per_run == 2
    assert warm.idle_timeout_s == 300.0 and warm.name == "local-warm"
    assert warm.options.env["WANSERVE_ENGINE__MODELS_DIR"] == str(tmp_path / "models")
    local = make_backend(Settings(data_dir=tmp_path, engine={"warm": False}))
    assert isinstance(local, LocalBackend)


def test_pools_come_from_the_short_form_or_the_pool_list(tmp_path: Path) -> None:
    [short] = Settings(data_dir=tmp_path, dispatch={"capacity": 2}).pools()
    assert (short.name, short.kind, short.capacity) == ("local-warm", "warm", 2)
    settings = Settings(
        data_dir=tmp_path,
        engine={"idle_timeout_s": 30},
        dispatch={
            "pools": [
                {"name": "warm", "kind": "warm", "models": ["wan2.2-tiny"]},
                {"name": "burst", "kind": "job", "capacity": 3, "drain_idle_s": 20},
                {"name": "jobs"},
            ]
        },
    )
    warm, burst, jobs = (make_backend(settings, pool) for pool in settings.pools())
    assert isinstance(warm, WarmPoolBackend) and warm.idle_timeout_s == 30
    assert isinstance(burst, WarmPoolBackend) and burst.idle_timeout_s == 20
    assert burst.max_engines == 3 and burst.name == "burst"
    assert isinstance(jobs, LocalBackend)
    kubernetes = settings.pools()[0].model_copy(update={"backend": "kubernetes"})
    with pytest.raises(InvalidRequest, match="one PyTorchJob per task"):
        make_backend(settings, kubernetes)


def test_the_generate_py_runner_reaches_the_engine_and_counts_its_own_ranks(
    tmp_path: Path,
) -> None:
    config = tmp_path / "generate.json"
    config.write_text(
        json.dumps(
            {"script": str(tmp_path / "generate.py"), "nproc_per_node": 4, "ulysses_size": 4}
        )
    )
    engine = {"runner": "generate_py", "generate_py_config": str(config)}
    backend = make_backend(Settings(data_dir=tmp_path, engine=engine))
    assert isinstance(backend, WarmPoolBackend) and backend.gpus_per_run == 4
    assert backend.options.nproc == 1  # the runner starts generate.py's ranks itself
    assert backend.options.env["WANSERVE_ENGINE__RUNNER"] == "generate_py"
    assert backend.options.env["WANSERVE_ENGINE__GENERATE_PY_CONFIG"] == str(config)
