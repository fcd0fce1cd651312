"""The model registry: ids, layouts and the defaults each card promises."""

from __future__ import annotations

import pytest

from wanserve.domain.errors import InvalidRequest
from wanserve.domain.models import MODELS, TINY_MODEL_IDS, TaskKind, get_model


def test_registry_holds_the_real_and_tiny_models() -> None:
    assert {"wan2.2-t2v-a14b", "wan2.2-i2v-a14b", "wan2.2-ti2v-5b", "wan2.2-tiny"} <= set(MODELS)
    assert "wan2.2-tiny" in TINY_MODEL_IDS
    assert "wan2.2-t2v-a14b" not in TINY_MODEL_IDS


@pytest.mark.parametrize("card", list(MODELS.values()), ids=lambda c: c.id)
def test_every_card_is_self_consistent(card) -> None:  # type: ignore[no-untyped-def]
    assert card.default_frames % 4 == 1
    assert card.default_frames <= card.max_frames
    assert 1 <= card.default_steps <= card.max_steps
    assert card.has_two_experts == card.layout.has_two_experts
    assert (card.boundary_ratio is None) == (not card.has_two_experts)
    if card.sizes is not None:
        assert card.default_size in card.sizes


def test_task_kinds_decide_whether_an_image_is_needed() -> None:
    assert get_model("wan2.2-i2v-a14b").requires_image
    assert not get_model("wan2.2-t2v-a14b").accepts_image
    ti2v = get_model("wan2.2-ti2v-5b")
    assert ti2v.tasks == {TaskKind.T2V, TaskKind.I2V}
    assert ti2v.accepts_image and not ti2v.requires_image


def test_unknown_model_names_the_known_ids() -> None:
    with pytest.raises(InvalidRequest) as info:
        get_model("wan9")
    assert info.value.field == "model" and info.value.value == "wan9"
    assert "wan2.2-tiny" in info.value.rule


def test_size_rules_read_differently_for_fixed_and_free_sizes() -> None:
    assert "1280x720" in get_model("wan2.2-t2v-a14b").supported_sizes_rule()
    assert "multiple of 16" in get_model("wan2.2-tiny").supported_sizes_rule()
