"""`wanserve keys create/list/revoke` as a real subprocess against a SQLite store."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from tests.conftest import subprocess_env
from wanserve.api.keys import hash_key
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
