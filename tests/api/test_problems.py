"""problem+json details: 405 names every method of the path, pydantic's errors read as rules."""

from __future__ import annotations

import pytest

from tests.api.conftest import Api
from wanserve.api.problems import rule_of

ALLOWED = [
    ("/v1/videos", "GET, POST"),
    ("/v1/videos/video_1", "DELETE, GET"),
    ("/v1/videos/video_1/cancel", "POST"),
    ("/v1/videos/video_1/events", "GET"),
    ("/v1/models", "GET"),
    ("/healthz", "GET"),
]


@pytest.mark.parametrize(("path", "allow"), ALLOWED)
async def test_405_allows_every_method_served_at_the_path(api: Api, path: str, allow: str) -> None:
    for method in ("OPTIONS", "PATCH", "PUT"):
        response = await api.client.request(method, path)
        assert response.status_code == 405, (method, path)
        assert response.headers["allow"] == allow, (method, path)
        assert response.headers["content-type"] == "application/problem+json"
        problem = response.json()
        assert problem["instance"] == path
        rule = f"must be one of {allow}"
        assert problem["errors"] == [{"field": "method", "value": method, "rule": rule}]
        assert problem["detail"] == f"{method} is not served at {path}: {rule}"


async def test_an_unknown_path_is_a_404_problem_naming_it(api: Api) -> None:
    response = await api.client.get("/v1/nothing")
    assert response.status_code == 404
    (error,) = response.json()["errors"]
    assert (error["field"], error["value"]) == ("path", "/v1/nothing")


@pytest.mark.parametrize(
    ("error", "rule"),
    [
        ({"type": "missing", "msg": "Field required"}, "is required"),
        ({"type": "int_parsing", "msg": "..."}, "must be an integer"),
        ({"type": "less_than_equal", "ctx": {"le": 100}, "msg": "..."}, "must be at most 100"),
        ({"type": "string_too_long", "ctx": {"max_length": 3}}, "must be at most 3 characters"),
        ({"type": "string_too_short", "ctx": {"min_length": 1}}, "must not be empty"),
        ({"type": "literal_error", "ctx": {"expected": "'a' or 'b'"}}, "must be one of 'a' or 'b'"),
        ({"type": "something_new", "msg": "Input is odd"}, "Input is odd"),
    ],
)
def test_pydantic_errors_read_like_the_domains_rules(error: dict[str, object], rule: str) -> None:
    assert rule_of(error) == rule


async def test_query_errors_name_field_value_and_rule(api: Api) -> None:
    response = await api.client.get("/v1/videos", params={"limit": 101, "order": "up"})
    assert response.status_code == 422
    assert response.json()["errors"] == [
        {"field": "limit", "value": "101", "rule": "must be at most 100"},
        {"field": "order", "value": "up", "rule": "must be one of 'asc' or 'desc'"},
    ]
    assert response.json()["detail"] == "limit='101' is invalid: must be at most 100"
