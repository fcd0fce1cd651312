"""`wanserve keys create/list/revoke` as a real subprocess against a SQLite store."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from tests.conftest import subprocess_env
from wanserve.api.keys import hash_key
from wanserve.domain.quotas import KeyLimits
from wanserve.store import default_url, open_store


def wanserve(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = subprocess_env(WANSERVE_DATA_DIR=str(data_dir))
    return subprocess.run(
        [sys.executable, "-m", "wanserve", "keys", *args],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_create_prints_the_secret_once_and_stores_its_hash(tmp_path: Path) -> None:
    created = wanserve(tmp_path, "create", "--name", "alice", "--admin")
    assert created.returncode == 0, created.stderr
    secret = created.stdout.strip().splitlines()[-1]
    key_id = created.stdout.split()[3]  # "created admin key <id> (alice)"
    assert secret.startswith("ws-") and key_id.startswith("key_")

    async def stored() -> list[tuple[str, bool, bool]]:
        store = await open_store(default_url(tmp_path))
        try:
            return [
                (k.key_hash, k.is_admin, k.revoked_at is None) for k in await store.list_api_keys()
            ]
        finally:
            await store.close()

    assert asyncio.run(stored()) == [(hash_key(secret), True, True)]
    listed = wanserve(tmp_path, "list")
    assert (
        key_id in listed.stdout and "alice  admin" in listed.stdout and secret not in listed.stdout
    )
    assert wanserve(tmp_path, "revoke", key_id).returncode == 0
    assert asyncio.run(stored())[0][2] is False
    again = wanserve(tmp_path, "revoke", key_id)
    assert again.returncode == 1 and "key_id" in again.stderr


def test_blank_name_is_refused(tmp_path: Path) -> None:
    result = wanserve(tmp_path, "create", "--name", " ")
    assert result.returncode == 2 and result.stderr.startswith("error: name=' ' is invalid")


def test_create_and_update_set_the_limits(tmp_path: Path) -> None:
    created = wanserve(
        tmp_path, "create", "--name", "app", "--max-concurrent", "2", "--per-hour", "30",
        "--gpu-seconds-per-day", "900", "--max-priority", "4", "--weight", "0.5",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    key_id = created.stdout.split()[2]  # "created key <id> (app)"

    async def limits() -> KeyLimits:
        store = await open_store(default_url(tmp_path))
        try:
            key = await store.get_api_key(key_id)
            assert key is not None
            return key.limits
        finally:
            await store.close()

    assert asyncio.run(limits()) == KeyLimits(2, 30, 900.0, 4, 0.5)
    updated = wanserve(
        tmp_path, "update", key_id, "--per-hour", "60", "--weight", "2", "--lift", "max_priority"
    )
    assert updated.returncode == 0, updated.stderr
    assert asyncio.run(limits()) == KeyLimits(2, 60, 900.0, None, 2.0)
    listed = wanserve(tmp_path, "list").stdout
    assert "max_concurrent=2 per_hour=60 gpu_seconds_per_day=900 max_priority=- weight=2" in listed
    bad = wanserve(tmp_path, "update", key_id, "--weight", "1000")
    assert bad.returncode == 2 and bad.stderr.startswith("error: weight=1000.0 is invalid")
    unknown = wanserve(tmp_path, "update", "key_nope", "--per-hour", "1")
    assert unknown.returncode == 1 and "key_nope" in unknown.stderr
