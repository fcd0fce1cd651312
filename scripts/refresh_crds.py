"""Refresh the pinned CRDs in tests/data/crds from upstream CRD files, prose stripped.

Usage: `python scripts/refresh_crds.py SOURCE... [--out DIR]`, where each SOURCE is an upstream
CustomResourceDefinition YAML file or a directory of them (`*.yaml`). Each one is written to
DIR (default tests/data/crds) under its own file name, with every `description` keyword of its
schemas and printer columns removed: a property that is *named* `description` is a schema and
stays. Types, required fields, enums, patterns, defaults and CEL rules (`x-kubernetes-validations`)
are kept as they are, in their upstream key order. The leading comment block of the upstream file
(the licence header, where there is one) is kept. The output is deterministic: the same source
gives the same bytes. After a refresh, update the versions in tests/data/crds/README.md.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
TARGET = ROOT / "tests" / "data" / "crds"
MARKER = "# Pinned copy, prose `description` fields stripped by scripts/refresh_crds.py."

# The keywords of a structural schema whose value is one subschema, a list of them or a map of
# names to them; everything else (enum, default, example, x-kubernetes-*) is data, left alone.
_ONE = ("additionalProperties", "items", "not")
_LIST = ("allOf", "anyOf", "oneOf")
_MAP = ("properties", "patternProperties", "definitions", "dependencies")


def strip_schema(schema: Any) -> Any:
    """`schema` (an openAPIV3Schema, changed in place) without its `description` keywords."""
    if not isinstance(schema, dict):
        return schema
    schema.pop("description", None)
    for key in _ONE:
        strip_schema(schema.get(key))
    for key in _LIST:
        for sub in schema.get(key) or ():
            strip_schema(sub)
    for key in _MAP:
        for sub in (schema.get(key) or {}).values():
            strip_schema(sub)
    return schema


def strip_crd(crd: dict[str, Any]) -> dict[str, Any]:
    """A CustomResourceDefinition (changed in place) without prose: schemas and printer columns."""
    if crd.get("kind") != "CustomResourceDefinition":
        raise ValueError(f"kind is {crd.get('kind')!r} (must be 'CustomResourceDefinition')")
    for version in crd["spec"]["versions"]:
        strip_schema((version.get("schema") or {}).get("openAPIV3Schema"))
        for column in version.get("additionalPrinterColumns") or ():
            column.pop("description", None)
    return crd


def _header(text: str) -> list[str]:
    lines = []
    for line in text.splitlines():
        if line.strip() and not line.startswith("#"):
            break
        lines.append(line)
    while lines and not lines[-1].strip():
        lines.pop()
    return [line for line in lines if line != MARKER]


def render(text: str) -> str:
    """The pinned copy of one upstream CRD file's text (exactly one CRD document)."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # same data, faster
    docs = [doc for doc in yaml.load_all(text, Loader=loader) if doc]
    if len(docs) != 1:
        raise ValueError(f"{len(docs)} YAML documents (must be exactly one CRD)")
    body = yaml.dump(
        strip_crd(docs[0]),
        Dumper=yaml.SafeDumper,  # not the C dumper: the bytes must not depend on libyaml
        sort_keys=False,
        width=1 << 16,
        allow_unicode=True,
        explicit_start=True,
    )
    return "\n".join([MARKER, *_header(text), body])


def _sources(paths: Iterable[Path]) -> list[Path]:
    out: list[Path] = []
    for path in paths:
        out += sorted(path.glob("*.yaml")) if path.is_dir() else [path]
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sources", nargs="+", type=Path, help="CRD files or directories of them")
    parser.add_argument("--out", type=Path, default=TARGET, help="where the copies go")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for source in _sources(args.sources):
        (args.out / source.name).write_text(render(source.read_text()))
        print(args.out / source.name)  # noqa: T201


if __name__ == "__main__":
    main()
