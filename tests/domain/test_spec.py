"""resolve_spec: defaults per model, and every rule names the field, the value and the rule."""

from __future__ import annotations

from typing import Any

import pytest

from wanserve.domain.errors import InvalidRequest
from wanserve.domain.models import TaskKind, get_model
from wanserve.domain.spec import (
    MAX_PROMPT_CHARS,
    VideoRequest,
    VideoSpec,
    format_size,
    frames_for_seconds,
    parse_size,
    resolve_spec,
)


def _resolve(**fields: Any) -> VideoSpec:
    fields.setdefault("model", "wan2.2-tiny")
    fields.setdefault("prompt", "a paper boat")
    return resolve_spec(VideoRequest(**fields), seed_factory=lambda: 1234)


def test_model_and_prompt_alone_take_every_default() -> None:
    spec = _resolve()
    card = get_model("wan2.2-tiny")
    assert spec.size == card.default_size
    assert spec.num_frames == card.default_frames
    assert spec.num_inference_steps == card.default_steps
    assert (spec.guidance_scale, spec.guidance_scale_2) == (
        card.guidance_scale,
        card.guidance_scale_2,
    )
    assert spec.shift == card.shift and spec.fps == card.fps
    assert spec.seed == 1234 and spec.task == TaskKind.T2V


def test_given_values_win_over_defaults() -> None:
    spec = _resolve(size="64x32", num_frames=13, num_inference_steps=7, seed=5, fps=8)
    assert (spec.width, spec.height, spec.num_frames) == (64, 32, 13)
    assert (spec.num_inference_steps, spec.seed, spec.fps) == (7, 5, 8)


def test_spec_round_trips_through_json() -> None:
    spec = _resolve(negative_prompt="blurry")
    assert VideoSpec.model_validate_json(spec.model_dump_json()) == spec
    assert spec.seconds == pytest.approx(spec.num_frames / spec.fps)


def test_seconds_become_the_nearest_4n_plus_1_frames() -> None:
    assert frames_for_seconds(1.0, 16) == 17
    assert frames_for_seconds(0.01, 16) == 5
    assert _resolve(seconds=2).num_frames == 33


@pytest.mark.parametrize(
    ("fields", "field", "rule_part"),
    [
        ({"model": "nope"}, "model", "must be one of"),
        ({"size": "7x7"}, "size", "multiple of 16"),
        ({"size": "big"}, "size", "WIDTHxHEIGHT"),
        ({"model": "wan2.2-t2v-a14b", "size": "1000x1000"}, "size", "must be one of"),
        ({"num_frames": 10}, "num_frames", "4n+1"),
        ({"num_frames": 1}, "num_frames", "between"),
        ({"num_frames": 53}, "num_frames", "between"),
        ({"num_inference_steps": 0}, "num_inference_steps", "between 1 and"),
        ({"num_inference_steps": 51}, "num_inference_steps", "between 1 and 50"),
        ({"guidance_scale": -1.0}, "guidance_scale", "between"),
        ({"guidance_scale": float("nan")}, "guidance_scale", "finite"),
        ({"guidance_scale_2": 21.0}, "guidance_scale_2", "between"),
        ({"model": "wan2.2-tiny-ti2v", "guidance_scale_2": 2.0}, "guidance_scale_2", "one"),
        ({"shift": 0.0}, "shift", "between"),
        ({"seed": -1}, "seed", "between"),
        ({"fps": 0}, "fps", "between"),
        ({"prompt": "   "}, "prompt", "must not be empty"),
        ({"prompt": "x" * (MAX_PROMPT_CHARS + 1)}, "prompt", f"at most {MAX_PROMPT_CHARS}"),
        ({"negative_prompt": "x" * (MAX_PROMPT_CHARS + 1)}, "negative_prompt", "at most"),
        ({"seconds": -1.0}, "seconds", "positive"),
        ({"seconds": 100.0}, "seconds", "at most"),
        ({"seconds": 1.0, "num_frames": 9}, "seconds", "not both"),
        ({"model": "wan2.2-i2v-a14b", "size": "1280x720"}, "input_reference", "required"),
        ({"image": "/tmp/a.png"}, "input_reference", "text-to-video only"),
    ],
)
def test_each_rule_names_field_value_and_rule(
    fields: dict[str, Any], field: str, rule_part: str
) -> None:
    with pytest.raises(InvalidRequest) as info:
        _resolve(**fields)
    error = info.value
    assert error.field == field
    assert rule_part in error.rule
    assert field in error.detail and rule_part in error.detail
    assert error.problem()["errors"][0]["field"] == field
    assert error.status == 422


def test_every_broken_rule_is_named_at_once_in_field_order() -> None:
    with pytest.raises(InvalidRequest) as info:
        _resolve(size="7x7", num_inference_steps=999, seed=-5, prompt=" ")
    error = info.value
    fields = [e["field"] for e in error.problem()["errors"]]
    assert fields == ["size", "prompt", "num_inference_steps", "seed"]
    assert (error.field, error.value) == ("size", "7x7"), "the first one is the error's own"
    assert error.detail.count("is invalid") == 4 and str(error) == error.detail
    values = {e["field"]: e["value"] for e in error.problem()["errors"]}
    assert values["num_inference_steps"] == 999 and values["seed"] == -5


def test_of_all_with_one_error_is_that_error() -> None:
    one = InvalidRequest("seed", -1, "must be between 0 and 9")
    assert InvalidRequest.of_all([one]) is one


def test_image_makes_an_i2v_spec_on_models_that_take_one() -> None:
    spec = _resolve(model="wan2.2-tiny-ti2v", image="/tmp/in.png")
    assert spec.task == TaskKind.I2V and spec.image == "/tmp/in.png"
    assert spec.guidance_scale_2 is None


def test_parse_and_format_size() -> None:
    assert parse_size(" 1280*720 ") == (1280, 720)
    assert parse_size("64×32") == (64, 32)
    assert format_size(64, 32) == "64x32"


def test_long_values_are_shortened_in_the_message() -> None:
    with pytest.raises(InvalidRequest) as info:
        _resolve(prompt="y" * 3000)
    assert "..." in info.value.detail and len(info.value.detail) < 300


def test_request_rejects_unknown_fields() -> None:
    with pytest.raises(ValueError, match="colour"):
        VideoRequest(model="wan2.2-tiny", prompt="x", colour="red")  # type: ignore[call-arg]


def test_loras_are_kept_in_order_and_checked() -> None:
    spec = _resolve(loras=[{"name": "lightx2v-4step", "scale": 0.8}, {"name": "style.v2"}])
    assert [(lora.name, lora.scale) for lora in spec.loras] == [
        ("lightx2v-4step", 0.8),
        ("style.v2", 1.0),
    ]
    assert VideoSpec.model_validate_json(spec.model_dump_json()) == spec
    assert _resolve().loras == ()
    with pytest.raises(InvalidRequest, match="must name each adapter once"):
        _resolve(loras=[{"name": "a"}, {"name": "a"}])
    with pytest.raises(InvalidRequest, match="at most 4 adapters"):
        _resolve(loras=[{"name": f"a{i}"} for i in range(5)])
    with pytest.raises(InvalidRequest) as scale:
        _resolve(loras=[{"name": "a", "scale": 9.0}])
    assert scale.value.field == "loras.scale"
    with pytest.raises(ValueError, match="pattern"):
        _resolve(loras=[{"name": "../etc"}])
