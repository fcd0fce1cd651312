"""Settings: the environment tree, and what production refuses."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from wanserve.settings import Settings


def test_nested_groups_come_from_double_underscore_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WANSERVE_API__PORT", "9000")
    monkeypatch.setenv("WANSERVE_API__MODELS", "wan2.2-tiny, wan2.2-ti2v-5b")
    settings = Settings()
    assert settings.api.port == 9000
    assert settings.api.models == ["wan2.2-tiny", "wan2.2-ti2v-5b"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("api", {"admin_key": "changethis"}),
        ("api", {"admin_key": "short-key"}),
        ("artifacts", {"s3_secret_access_key": "secret"}),
    ],
)
def test_production_refuses_placeholder_secrets(field: str, value: dict[str, str]) -> None:
    Settings(**{field: value})  # type: ignore[arg-type]  # fine while developing
    with pytest.raises(ValidationError, match="is a placeholder: in production"):
        Settings(environment="production", **{field: value})  # type: ignore[arg-type]


def test_production_takes_real_secrets_and_no_secrets() -> None:
    strong = "ws-admin-4c1f9a7e2b8d4e6f"
    settings = Settings(environment="production", api={"admin_key": strong})
    assert settings.api.admin_key is not None
    assert settings.api.admin_key.get_secret_value() == strong
    assert Settings(environment="production").api.admin_key is None


def test_the_short_form_ray_pool_is_resident() -> None:
    assert [p.kind for p in Settings(dispatch={"backend": "ray"}).pools()] == ["warm"]


def test_a_ray_client_address_is_refused_with_what_to_give_instead() -> None:
    with pytest.raises(ValidationError, match=r"ray://.*GCS address \(host:6379\)"):
        Settings(ray={"address": "ray://head:10001"})
    assert Settings(ray={"address": "head:6379"}).ray.address == "head:6379"
