from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.backends.kubernetes.crd import label_problems, metadata_problems
from wanserve.backends.kubernetes.names import (
    MAX_JOB_NAME,
    check_dns1123_label,
    check_labels,
    job_name,
    label_value,
)
from wanserve.domain.errors import InvalidRequest


def test_job_name_keeps_a_clean_id_readable() -> None:
    assert job_name("task-42") == "ws-task-42"


def test_job_name_of_an_openai_style_id_is_cleaned_and_hashed() -> None:
    name = job_name("video_68a2f0C1")
    assert name.startswith("ws-video-68a2f0c1-") and len(name) == len("ws-video-68a2f0c1-") + 8


def test_job_name_is_stable() -> None:
    assert job_name("video_x") == job_name("video_x")


@settings(max_examples=300, deadline=None)
@given(task_id=st.text(min_size=1, max_size=300))
def test_any_task_id_gives_a_valid_short_job_name(task_id: str) -> None:
    name = job_name(task_id)
    assert len(name) <= MAX_JOB_NAME
    assert metadata_problems({"metadata": {"name": name}}, dns1035=True) == []
    assert label_problems({"wanserve.dev/task-id": label_value(task_id)}) == []


@settings(max_examples=200, deadline=None)
@given(a=st.text(min_size=1, max_size=80), b=st.text(min_size=1, max_size=80))
def test_different_task_ids_never_share_a_job_name(a: str, b: str) -> None:
    if a != b:
        assert job_name(a) != job_name(b)


def test_label_value_keeps_valid_values() -> None:
    assert label_value("wan2.2-t2v-a14b") == "wan2.2-t2v-a14b"


@pytest.mark.parametrize("bad", ["Default", "-x", "a" * 64, "a_b"])
def test_namespace_rule_names_field_and_value(bad: str) -> None:
    with pytest.raises(InvalidRequest) as err:
        check_dns1123_label("kubernetes.namespace", bad)
    assert err.value.field == "kubernetes.namespace" and err.value.value == bad
    assert "DNS-1123" in err.value.rule


@pytest.mark.parametrize(
    "labels",
    [{"bad key!": "x"}, {"UPPER.example.com/x": "y"}, {"k": "-starts-with-dash"}, {"k": "v" * 64}],
)
def test_check_labels_refuses_what_kubernetes_refuses(labels: dict[str, str]) -> None:
    assert label_problems(labels)  # the independent checker agrees these are invalid
    with pytest.raises(InvalidRequest):
        check_labels("metadata.labels", labels)
