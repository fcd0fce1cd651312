"""`wanserve list/status/events/download/delete/cancel/usage/pools` against a real API server
(tests/cli/conftest.py): what `--json` prints is the API's JSON, the reports name what matters,
and an error answer is printed readably on stderr with exit status 1."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.cli.conftest import CliServer
from wanserve.cli.client import parse_time

pytestmark = pytest.mark.integration


def _json(result: Any) -> Any:
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return json.loads(result.stdout)


def _submit(server: CliServer, steps: int) -> str:
    result = server.wanserve(
        "submit", "--prompt", "a kite", "--size", "32x32", "--steps", str(steps)
    )
    assert result.exit_code == 0, result.stderr
    return str(result.stdout.strip())


def _wait_state(server: CliServer, video_id: str, state: str) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while True:
        video: dict[str, Any] = _json(server.wanserve("status", video_id, "--json"))
        if video["state"] == state or time.monotonic() > deadline:
            return video
        time.sleep(0.05)


@pytest.fixture(scope="module")
def completed(cli_server: CliServer) -> str:
    """A video of the user's that ran to the end (followed with `events --json`)."""
    video_id = _submit(cli_server, steps=2)
    lines = cli_server.wanserve("events", video_id, "--json").stdout.splitlines()
    assert json.loads(lines[-1])["data"]["state"] == "completed"
    return video_id


def test_events_follow_a_task_to_its_end_and_resume_after_an_id(
    cli_server: CliServer, completed: str
) -> None:
    result = cli_server.wanserve("events", completed, "--json")
    stored = [json.loads(line) for line in result.stdout.splitlines()]
    numbered = [e for e in stored if e.get("id") is not None]
    assert [e["id"] for e in numbered] == list(range(1, len(numbered) + 1))
    assert {e["type"] for e in numbered} >= {"created", "state", "step"}
    assert all(e["task_id"] == completed for e in stored)
    resumed = cli_server.wanserve("events", completed, "--after", "3", "--json")
    assert [json.loads(line)["id"] for line in resumed.stdout.splitlines()][0] == 4
    text = cli_server.wanserve("events", completed).stdout.splitlines()
    assert "state" in text[-1] and "state=completed" in text[-1]
    assert any("step" in line and "total=2" in line for line in text)


def test_status_and_list_print_the_apis_json_or_a_report(
    cli_server: CliServer, completed: str
) -> None:
    video = _json(cli_server.wanserve("status", completed, "--json"))
    assert (video["id"], video["status"], video["progress"]) == (completed, "completed", 100)
    page = _json(cli_server.wanserve("list", "--json", "--state", "completed", "--limit", "100"))
    assert page["object"] == "list" and completed in [v["id"] for v in page["data"]]
    assert all(v["state"] == "completed" for v in page["data"])
    listed = cli_server.wanserve("list", "--limit", "100")
    [line] = [line for line in listed.stdout.splitlines() if line.startswith(completed)]
    assert "completed" in line and "100%" in line and "a kite" in line
    status = cli_server.wanserve("status", completed)
    assert status.stdout.startswith(f"{completed}  completed  100%")


def test_list_pages_with_after(cli_server: CliServer, completed: str) -> None:
    _submit(cli_server, steps=1)
    first = _json(cli_server.wanserve("list", "--json", "--limit", "1"))
    assert first["has_more"] is True
    text = cli_server.wanserve("list", "--limit", "1").stdout
    assert f"more: --after {first['last_id']}" in text
    second = _json(
        cli_server.wanserve("list", "--json", "--limit", "1", "--after", first["last_id"])
    )
    assert second["data"][0]["id"] != first["data"][0]["id"]


def test_download_saves_the_video_and_the_poster(
    cli_server: CliServer, completed: str, tmp_path: Path
) -> None:
    out = tmp_path / "kite.mp4"
    saved = _json(cli_server.wanserve("download", completed, "-o", str(out), "--json"))
    assert out.read_bytes() == f"video of {completed} attempt 1".encode()  # the backend's file
    assert saved == {
        "id": completed,
        "variant": "video",
        "path": str(out),
        "bytes": out.stat().st_size,
    }
    poster = tmp_path / "poster.jpg"
    result = cli_server.wanserve("download", completed, "--variant", "thumbnail", "-o", str(poster))
    assert result.exit_code == 0 and poster.read_bytes() == b"poster"
    assert result.stdout.strip() == f"saved {poster} (6 bytes)"


def test_download_of_an_unfinished_video_is_a_readable_404_and_writes_nothing(
    cli_server: CliServer, tmp_path: Path
) -> None:
    video_id = _submit(cli_server, steps=40)
    out = tmp_path / "early.mp4"
    result = cli_server.wanserve("download", video_id, "-o", str(out))
    assert result.exit_code == 1 and result.stdout == ""
    assert (
        result.stderr.startswith("error 404 Not found: ") and "must be completed" in result.stderr
    )
    assert list(tmp_path.iterdir()) == []
    cli_server.wanserve("cancel", video_id)


def test_cancel_a_running_video_then_a_second_cancel_is_a_409(cli_server: CliServer) -> None:
    video_id = _submit(cli_server, steps=50)
    assert _wait_state(cli_server, video_id, "in_progress")["state"] == "in_progress"
    cancelled = _json(cli_server.wanserve("cancel", video_id, "--json"))
    assert cancelled["id"] == video_id and cancelled["cancel_requested"] is True
    assert _wait_state(cli_server, video_id, "cancelled")["state"] == "cancelled"
    again = cli_server.wanserve("cancel", video_id)
    assert again.exit_code == 1 and again.stderr.startswith("error 409 ")
    assert "cancelled" in again.stderr


def test_delete_then_the_video_is_not_found(cli_server: CliServer) -> None:
    video_id = _submit(cli_server, steps=1)
    _wait_state(cli_server, video_id, "completed")
    assert _json(cli_server.wanserve("delete", video_id, "--json"))["id"] == video_id
    gone = cli_server.wanserve("status", video_id, "--json")
    assert gone.exit_code == 1 and gone.stdout == "" and "error 404 Not found" in gone.stderr
    again = cli_server.wanserve("delete", video_id)
    assert again.exit_code == 1 and video_id in again.stderr


def test_usage_of_the_users_key_and_of_every_key_for_an_admin(
    cli_server: CliServer, completed: str
) -> None:
    mine = _json(cli_server.wanserve("usage", "--json", "--since", "1h"))
    [entry] = mine["data"]
    assert entry["key_id"] == cli_server.user_key_id and entry["tasks"] >= 1
    assert mine["since"] == pytest.approx(time.time() - 3600, abs=60)
    everyone = _json(cli_server.admin("usage", "--json"))
    assert cli_server.user_key_id in [e["key_id"] for e in everyone["data"]]
    text = cli_server.admin("usage", "--until", "2001-01-01").stdout
    assert text.splitlines() == [
        "usage from the start to 2001-01-01 00:00:00Z",
        "  nothing settled in this range",
    ]
    report = cli_server.wanserve("usage").stdout
    assert f"{cli_server.user_key_id}: {entry['tasks']} tasks" in report
    bad = cli_server.wanserve("usage", "--since", "last tuesday")
    assert bad.exit_code == 2 and "not a time" in bad.stderr


def test_pools_need_an_admin_key_and_show_the_dispatchers_pool(cli_server: CliServer) -> None:
    refused = cli_server.wanserve("pools", "--json")
    assert refused.exit_code == 1 and refused.stdout == ""
    assert refused.stderr.startswith("error 403 Forbidden: ") and "admin key" in refused.stderr
    deadline = time.monotonic() + 10
    while not (found := _json(cli_server.admin("pools", "--json")))["data"]:
        assert time.monotonic() < deadline, "no pool reported"
        time.sleep(0.1)
    [pool] = found["data"]
    assert pool["capacity"] == 1 and pool["kind"] == "job"
    assert f"/{pool['name']} job " in cli_server.admin("pools").stdout


def test_a_wrong_key_and_a_bad_field_are_printed_as_problems(cli_server: CliServer) -> None:
    wrong = cli_server.wanserve("list", key="ws-not-a-key")
    assert wrong.exit_code == 1 and wrong.stderr.startswith("error 401 ")
    invalid = cli_server.wanserve("list", "--state", "sleeping", "--json")
    assert invalid.exit_code == 1 and invalid.stdout == ""
    [line] = invalid.stderr.splitlines()  # the detail names the field: no line of its own
    assert line.startswith("error 422 Invalid request: state.0='sleeping' is invalid: "), line
    video_id = _submit(cli_server, steps=40)
    early = cli_server.wanserve("download", video_id)
    cli_server.wanserve("cancel", video_id)
    first, *fields = early.stderr.splitlines()
    assert first.startswith("error 404 ") and "video_id=" not in first
    assert fields == [f"  video_id={video_id!r}: must be completed"], early.stderr


def test_an_unreachable_server_is_one_line_and_exit_1(cli_server: CliServer) -> None:
    from typer.testing import CliRunner

    from wanserve.cli import app

    env = {"WANSERVE_SERVER": "http://127.0.0.1:9", "WANSERVE_API_KEY": "k"}
    result = CliRunner().invoke(app, ["list"], env=env)
    assert result.exit_code == 1 and result.stderr.startswith("cannot reach the server")


def test_parse_time_takes_unix_seconds_ages_and_iso_times() -> None:
    now = 1_700_000_000.0
    assert parse_time("1699999000", now) == 1_699_999_000.0
    assert parse_time("90s", now) == now - 90
    assert parse_time("24h", now) == now - 86400
    assert parse_time("7d", now) == now - 7 * 86400
    assert parse_time("2023-11-14", now) == 1_699_920_000.0
    assert parse_time("2023-11-14T01:00:00+01:00", now) == 1_699_920_000.0
    with pytest.raises(ValueError, match="not a time"):
        parse_time("soon", now)


def test_submit_wait_follows_the_task_and_saves_the_video(
    cli_server: CliServer, tmp_path: Path
) -> None:
    out = tmp_path / "waited.mp4"
    args = ("submit", "--prompt", "a kite", "--steps", "2", "--wait", "--output", str(out))
    result = cli_server.wanserve(*args)
    assert result.exit_code == 0, result.stderr
    video_id = result.stdout.splitlines()[0]
    assert out.read_bytes() == f"video of {video_id} attempt 1".encode()
    assert f"saved {out}" in result.stdout and f"{video_id}  completed  100%" in result.stdout
