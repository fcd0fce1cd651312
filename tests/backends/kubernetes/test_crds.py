"""The pinned CRDs in tests/data/crds: prose stripped, valid CRDs, exactly as the script writes.

The upstream files are not in the repository, so scripts/refresh_crds.py is tested on an inline
CRD, and each pinned copy must be a fixed point of it (the script writes it back byte for byte).
"""

from __future__ import annotations

import runpy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import celpy
import jsonschema  # type: ignore[import-untyped]
import pytest
import yaml

from tests.conftest import CRDS, ROOT

REFRESH = runpy.run_path(str(ROOT / "scripts" / "refresh_crds.py"))
PINNED = [
    "kubeflow.org_pytorchjobs.yaml",
    "trainer.kubeflow.org_trainjobs.yaml",
    "trainer.kubeflow.org_clustertrainingruntimes.yaml",
    "kueue.x-k8s.io_clusterqueues.yaml",
    "kueue.x-k8s.io_localqueues.yaml",
    "kueue.x-k8s.io_workloads.yaml",
    "ray.io_rayclusters.yaml",
    "ray.io_rayjobs.yaml",
    "ray.io_rayservices.yaml",
    "serving.kserve.io_inferenceservices.yaml",
    "keda.sh_scaledobjects.yaml",
    "keda.sh_scaledjobs.yaml",
]

UPSTREAM = """\
# Copyright The Example Authors.
# Licensed under the Apache License, Version 2.0.

---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: notes.example.org
spec:
  group: example.org
  names: {kind: Note, plural: notes}
  scope: Namespaced
  versions:
  - name: v1
    additionalPrinterColumns:
    - {name: Title, jsonPath: .spec.title, type: string, description: The note's title.}
    schema:
      openAPIV3Schema:
        description: A note.
        type: object
        properties:
          spec:
            description: |-
              What the note says.
              Two lines of prose.
            type: object
            required: [title]
            x-kubernetes-validations:
            - {rule: "self.title != ''", message: title must not be empty}
            properties:
              title: {description: Its title., type: string, pattern: '^[a-z]+$'}
              description:
                description: A property named description; the keyword goes, the property stays.
                type: string
                default: plain
              tags:
                type: array
                items: {description: One tag., type: string, enum: [a, b]}
              extra:
                type: object
                additionalProperties: {description: Any value., type: string}
              either:
                anyOf:
                - {description: A number., type: integer}
                - {description: A string., type: string}
              example:
                type: object
                x-kubernetes-preserve-unknown-fields: true
                default: {description: "data, not a schema"}
    served: true
    storage: true
"""


def _prose(value: Any) -> Iterator[str]:
    """Every `description` keyword holding text, anywhere (a schema named so is a dict)."""
    if isinstance(value, dict):
        if isinstance(value.get("description"), str):
            yield value["description"]
        for sub in value.values():
            yield from _prose(sub)
    elif isinstance(value, list):
        for sub in value:
            yield from _prose(sub)


def _rules(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        yield from (rule["rule"] for rule in value.get("x-kubernetes-validations") or ())
        for sub in value.values():
            yield from _rules(sub)
    elif isinstance(value, list):
        for sub in value:
            yield from _rules(sub)


def test_stripping_removes_the_keyword_and_keeps_everything_else() -> None:
    crd = REFRESH["strip_crd"](yaml.safe_load(UPSTREAM))
    version = crd["spec"]["versions"][0]
    schema = version["schema"]["openAPIV3Schema"]
    spec = schema["properties"]["spec"]
    assert "description" not in schema and "description" not in spec
    assert spec["properties"]["description"] == {"type": "string", "default": "plain"}
    assert spec["properties"]["title"] == {"type": "string", "pattern": "^[a-z]+$"}
    assert spec["properties"]["tags"]["items"] == {"type": "string", "enum": ["a", "b"]}
    assert spec["properties"]["extra"]["additionalProperties"] == {"type": "string"}
    assert spec["properties"]["either"]["anyOf"] == [{"type": "integer"}, {"type": "string"}]
    assert spec["properties"]["example"]["default"] == {"description": "data, not a schema"}
    assert spec["required"] == ["title"]
    assert list(_rules(spec)) == ["self.title != ''"]
    assert version["additionalPrinterColumns"][0] == {
        "name": "Title",
        "jsonPath": ".spec.title",
        "type": "string",
    }


def test_render_keeps_the_licence_header_and_key_order_and_is_repeatable() -> None:
    text = REFRESH["render"](UPSTREAM)
    assert text.startswith(REFRESH["MARKER"] + "\n# Copyright The Example Authors.\n")
    assert "# Licensed under the Apache License, Version 2.0.\n---\n" in text
    assert text.index("apiVersion:") < text.index("kind:") < text.index("metadata:")
    assert "Two lines of prose" not in text and "Its title" not in text
    assert REFRESH["render"](text) == text


def test_render_refuses_what_is_not_one_crd() -> None:
    with pytest.raises(ValueError, match="must be 'CustomResourceDefinition'"):
        REFRESH["render"]("kind: ConfigMap\n")
    with pytest.raises(ValueError, match="2 YAML documents"):
        REFRESH["render"](UPSTREAM + UPSTREAM)


def test_main_writes_each_source_under_its_name(tmp_path: Path) -> None:
    source = tmp_path / "upstream"
    source.mkdir()
    (source / "example.org_notes.yaml").write_text(UPSTREAM)
    REFRESH["main"]([str(source), "--out", str(tmp_path / "out")])
    written = (tmp_path / "out" / "example.org_notes.yaml").read_text()
    assert written == REFRESH["render"](UPSTREAM)


def test_every_pinned_crd_is_listed_in_the_readme() -> None:
    assert sorted(path.name for path in CRDS.glob("*.yaml")) == sorted(PINNED)
    readme = (CRDS / "README.md").read_text()
    assert [name for name in PINNED if f"| {name} |" not in readme] == []


@pytest.fixture(scope="module")
def pinned() -> dict[str, tuple[str, dict[str, Any]]]:
    """Each pinned file's text and CRD, read once (the C loader: about 3 s for all of them)."""
    out = {}
    for name in PINNED:
        text = (CRDS / name).read_text()
        out[name] = (text, yaml.load(text, Loader=yaml.CSafeLoader))
    return out


@pytest.mark.parametrize("name", PINNED)
def test_pinned_crd_has_no_prose_and_is_a_valid_crd(
    name: str, pinned: dict[str, tuple[str, dict[str, Any]]]
) -> None:
    crd = pinned[name][1]
    assert list(_prose(crd)) == []
    assert crd["kind"] == "CustomResourceDefinition"
    assert crd["metadata"]["name"] == f"{crd['spec']['names']['plural']}.{crd['spec']['group']}"
    for version in crd["spec"]["versions"]:
        jsonschema.Draft7Validator.check_schema(version["schema"]["openAPIV3Schema"])
    environment = celpy.Environment()
    for rule in _rules(crd):
        environment.compile(rule)


@pytest.mark.slow
@pytest.mark.parametrize("name", PINNED)
def test_pinned_crd_is_exactly_what_the_script_writes(
    name: str, pinned: dict[str, tuple[str, dict[str, Any]]]
) -> None:
    text = pinned[name][0]
    assert REFRESH["render"](text) == text, "run: python scripts/refresh_crds.py <upstream dir>"
