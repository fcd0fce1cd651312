"""deploy/grafana/wanserve.json: every query names only metrics the service exports, read from
the real endpoints (the API's /metrics and a worker's metrics port) after a task ran."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.api.conftest import make_api
from tests.api.dispatching import make_dispatcher, running_dispatcher, wait_for_state
from tests.conftest import ROOT
from wanserve.cli.processes import serving_metrics
from wanserve.settings import DispatchSettings, Settings

DASHBOARD = ROOT / "deploy" / "grafana" / "wanserve.json"

_STRINGS = re.compile(r"\"(?:\\.|[^\"\\])*\"|'(?:\\.|[^'\\])*'")
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGES = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_WORD = re.compile(r"(?<![\w:$.])[A-Za-z_:][\w:]*")
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "group_left", "group_right", "inf", "nan"}
_SAMPLE_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
}


def metric_names(expr: str) -> set[str]:
    """The series names a PromQL expression selects: its identifiers that are not functions,
    keywords, label names (in matchers and by/without/on clauses) or Grafana variables."""
    text = _STRINGS.sub('""', expr)
    for pattern in (_MATCHERS, _RANGES, _GROUPING):
        text = pattern.sub(" ", text)
    names = set()
    for word in _WORD.finditer(text):
        is_call = text[word.end() :].lstrip().startswith("(")
        if not is_call and word.group().lower() not in _KEYWORDS:
            names.add(word.group())
    return names


def test_metric_names_skips_functions_labels_variables_and_durations() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (le, pool) (rate(a_bucket{model=~"$model", x="b c"}'
        "[$__rate_interval]))) / on (pool) group_left sum(b_total offset 5m) > bool 1e3"
    )
    assert metric_names(expr) == {"a_bucket", "b_total"}


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def queries(dashboard: dict[str, Any]) -> list[str]:
    """Every PromQL expression of the dashboard: its panels' targets and its variables'."""
    exprs = [t["expr"] for p in _panels(dashboard["panels"]) for t in p.get("targets", [])]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            found = re.fullmatch(r"label_values\((.+),\s*\w+\)", variable["query"]["query"])
            assert found is not None, variable
            exprs.append(found.group(1))
    return exprs


def exported(text: str) -> set[str]:
    """The series names an exposition holds: its samples', and those its families declare
    (a labelled metric with no child yet has only its HELP and TYPE lines)."""
    names = set()
    for family in text_string_to_metric_families(text):
        names |= {sample.name for sample in family.samples}
        names |= {family.name + s for s in _SAMPLE_SUFFIXES.get(family.type, ("",))}
    return names


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
async def scraped(tmp_path: Path) -> dict[str, set[str]]:
    """The API's and a worker's exported names after one task ran through both."""
    app, store, queue, artifacts, clock, _ = make_api(tmp_path)
    port = _free_port()
    worker_settings = Settings(data_dir=tmp_path, dispatch=DispatchSettings(metrics_port=port))
    dispatcher = make_dispatcher(store, queue, artifacts, tmp_path / "work", clock=clock)
    transport = httpx.ASGITransport(app=app)
    async with (
        httpx.AsyncClient(transport=transport, base_url="http://test") as api,
        httpx.AsyncClient() as client,
        serving_metrics(worker_settings, dispatcher.metrics.registry),
    ):
        created = await api.post("/v1/videos", json={"model": "wan2.2-tiny", "prompt": "a boat"})
        async with running_dispatcher(dispatcher):
            await wait_for_state(store, created.json()["id"])
        api_text = (await api.get("/metrics")).text
        worker_text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
    return {"api": exported(api_text), "worker": exported(worker_text)}


def test_every_dashboard_query_names_exported_metrics(scraped: dict[str, set[str]]) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    available = scraped["api"] | scraped["worker"]
    assert "wanserve_task_e2e_seconds_bucket" in scraped["worker"]  # the task ran there
    assert "wanserve_http_requests_total" in scraped["api"]
    for expr in queries(dashboard):
        names = metric_names(expr)
        assert names, f"no metric in {expr!r}"
        assert names <= available, f"{sorted(names - available)} in {expr!r} are not exported"


def test_the_dashboard_shows_every_worker_metric(scraped: dict[str, set[str]]) -> None:
    used = set().union(*(metric_names(e) for e in queries(json.loads(DASHBOARD.read_text()))))
    families = {re.sub(r"_(bucket|count|sum|created|total)$", "", n) for n in scraped["worker"]}
    shown = {re.sub(r"_(bucket|count|sum|created|total)$", "", n) for n in used}
    assert families - shown == set()
