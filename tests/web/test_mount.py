"""mount_web: what the server sends for the page and its assets (no browser needed)."""

from __future__ import annotations

import re

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from wanserve.web import STATIC_DIR, mount_web


@pytest.fixture
def client() -> TestClient:
    app = FastAPI()

    @app.get("/v1/ping")
    def ping() -> dict[str, str]:
        return {"pong": "yes"}

    mount_web(app)
    return TestClient(app)


@pytest.mark.parametrize("path", ["/", "/videos/video_0123abc"])
def test_index_has_the_prompt_field_and_revalidates(client: TestClient, path: str) -> None:
    """The page, also at a video's own address (the page then shows that video alone)."""
    response = client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["cache-control"] == "no-cache"
    assert "script-src 'self'" in response.headers["content-security-policy"]
    assert re.search(r'<textarea id="prompt" name="prompt"', response.text)


def test_api_routes_still_answer(client: TestClient) -> None:
    assert client.get("/v1/ping").json() == {"pong": "yes"}


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/static/js/app.js", "text/javascript; charset=utf-8"),
        ("/static/style.css", "text/css; charset=utf-8"),
        ("/static/icon.svg", "image/svg+xml"),
    ],
)
def test_assets_have_explicit_types_and_etags(
    client: TestClient, path: str, content_type: str
) -> None:
    response = client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"] == content_type
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-content-type-options"] == "nosniff"
    again = client.get(path, headers={"If-None-Match": response.headers["etag"]})
    assert again.status_code == 304


def test_nothing_outside_the_static_folder_is_served(client: TestClient) -> None:
    assert client.get("/static/../__init__.py").status_code == 404
    assert client.get("/static/%2e%2e/__init__.py").status_code == 404
    assert client.get("/static/missing.js").status_code == 404


def test_every_module_import_and_asset_reference_exists() -> None:
    """The page has no build step: a typo in an import path would only show in the browser."""
    modules = list((STATIC_DIR / "js").glob("*.js"))
    assert modules
    for module in modules:
        for target in re.findall(r'from "(\./[^"]+)"', module.read_text()):
            assert (module.parent / target).is_file(), f"{module.name} imports missing {target}"
    index = (STATIC_DIR / "index.html").read_text()
    for target in re.findall(r'(?:src|href)="/static/([^"]+)"', index):
        assert (STATIC_DIR / target).is_file(), f"index.html references missing {target}"
