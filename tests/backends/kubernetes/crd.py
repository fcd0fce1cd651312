"""Check manifests the way an API server would, offline: the pinned CRDs, strictly, plus CEL.

`CrdValidator` loads one CRD file (C YAML loader, once per session through the `crds` fixture),
makes its openAPIV3Schema strict (unknown fields rejected, as `kubectl --validate=strict` and
kubeconform do), and evaluates every `x-kubernetes-validations` CEL rule with cel-python
(transition rules, which read `oldSelf`, only when an old object is given).
Object metadata is checked against Kubernetes' own name and label syntax, which schemas omit.
Built-in kinds go through kubernetes-validate (strict).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import celpy
import jsonschema  # type: ignore[import-untyped]
import kubernetes_validate
import yaml
from celpy.adapter import json_to_cel

K8S_VERSION = "1.33"
_DNS1123_SUBDOMAIN = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_QUALIFIED_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def _strict(schema: Any) -> Any:
    if isinstance(schema, dict):
        if "properties" in schema and not schema.get("x-kubernetes-preserve-unknown-fields"):
            schema.setdefault("additionalProperties", False)
        for key, value in schema.items():
            if key != "metadata":
                _strict(value)
    elif isinstance(schema, list):
        for value in schema:
            _strict(value)
    return schema


class CrdValidator:
    """One CRD's versions: `problems(obj, old=None)` lists every rule the object breaks."""

    def __init__(self, path: Path) -> None:
        crd = yaml.load(path.read_text(), Loader=yaml.CSafeLoader)
        self.group = crd["spec"]["group"]
        self.kind = crd["spec"]["names"]["kind"]
        self.schemas: dict[str, dict[str, Any]] = {}
        for version in crd["spec"]["versions"]:
            schema = _strict(version["schema"]["openAPIV3Schema"])
            schema.setdefault("properties", {})["metadata"] = {"type": "object"}
            self.schemas[f"{self.group}/{version['name']}"] = schema
        self._cel = celpy.Environment()
        self._programs: dict[str, Any] = {}
        self.rules_evaluated = 0

    def problems(self, obj: dict[str, Any], old: dict[str, Any] | None = None) -> list[str]:
        schema = self.schemas.get(obj.get("apiVersion", ""))
        if schema is None or obj.get("kind") != self.kind:
            return [f"not a {self.kind} of {sorted(self.schemas)}: {obj.get('apiVersion')}"]
        validator = jsonschema.Draft7Validator(schema)
        out = [
            f"{'/'.join(map(str, e.path))}: {e.message[:200]}" for e in validator.iter_errors(obj)
        ]
        out += self._cel_problems(schema, obj, old, "")
        return out + metadata_problems(obj, dns1035=True)

    def _program(self, rule: str) -> Any:
        if rule not in self._programs:
            self._programs[rule] = self._cel.program(self._cel.compile(rule))
        return self._programs[rule]

    def _cel_problems(self, schema: Any, value: Any, old: Any, path: str) -> list[str]:
        if not isinstance(schema, dict) or value is None:
            return []
        out = []
        for rule in schema.get("x-kubernetes-validations", []):
            is_transition = "oldSelf" in rule["rule"]
            if is_transition and old is None:
                continue  # transition rules apply to updates only
            bindings = {"self": json_to_cel(value)}
            if is_transition:
                bindings["oldSelf"] = json_to_cel(old)
            self.rules_evaluated += 1
            result = self._program(rule["rule"]).evaluate(bindings)
            if result is not True and not (isinstance(result, celpy.celtypes.BoolType) and result):
                out.append(f"{path or '/'}: {rule.get('message', rule['rule'])}")
        for key, sub_schema, sub_value, sub_old in _children(schema, value, old):
            out += self._cel_problems(sub_schema, sub_value, sub_old, f"{path}/{key}")
        return out


def _children(schema: dict[str, Any], value: Any, old: Any) -> Iterator[tuple[Any, Any, Any, Any]]:
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        for key, sub in value.items():
            sub_schema = props.get(key, extra if isinstance(extra, dict) else None)
            sub_old = old.get(key) if isinstance(old, dict) else None
            yield key, sub_schema, sub, sub_old
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, sub in enumerate(value):
            yield index, schema["items"], sub, None  # list items carry no oldSelf by position


def metadata_problems(obj: dict[str, Any], *, dns1035: bool = False) -> list[str]:
    """Kubernetes' name and label syntax for `obj.metadata` (the schemas leave it out)."""
    meta = obj.get("metadata") or {}
    name = meta.get("name", "")
    out = []
    if not name or len(name) > 63 or not _DNS1123_LABEL.match(name):
        out.append(f"metadata.name {name!r} is not a DNS-1123 label")
    if dns1035 and not name[:1].isalpha():
        out.append(f"metadata.name {name!r} must start with a letter (its Services are DNS-1035)")
    namespace = meta.get("namespace")
    if namespace is not None and not _DNS1123_LABEL.match(namespace):
        out.append(f"metadata.namespace {namespace!r} is not a DNS-1123 label")
    for where, labels in _all_labels(obj):
        out += [f"{where}: {p}" for p in label_problems(labels)]
    for key in meta.get("annotations") or {}:
        out += [f"metadata.annotations: {p}" for p in _key_problems(key)]
    return out


def _all_labels(obj: dict[str, Any]) -> Iterator[tuple[str, dict[str, str]]]:
    yield "metadata.labels", (obj.get("metadata") or {}).get("labels") or {}
    replicas = (obj.get("spec") or {}).get("pytorchReplicaSpecs") or {}
    for role, replica in replicas.items():
        labels = ((replica.get("template") or {}).get("metadata") or {}).get("labels") or {}
        yield f"{role}.template.metadata.labels", labels


def _key_problems(key: str) -> list[str]:
    prefix, _, name = key.rpartition("/")
    out = []
    if prefix and (len(prefix) > 253 or not _DNS1123_SUBDOMAIN.match(prefix)):
        out.append(f"key {key!r}: prefix is not a DNS-1123 subdomain")
    if not name or len(name) > 63 or not _QUALIFIED_NAME.match(name):
        out.append(f"key {key!r}: name is not a qualified name")
    return out


def label_problems(labels: dict[str, str]) -> list[str]:
    out = []
    for key, value in labels.items():
        out += _key_problems(key)
        if not isinstance(value, str) or len(value) > 63 or not _LABEL_VALUE.match(value):
            out.append(f"label {key}={value!r}: not a valid label value")
    return out


def builtin_problems(obj: dict[str, Any]) -> list[str]:
    """kubernetes-validate (strict) for a built-in kind, plus the metadata syntax."""
    try:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return [f"{obj.get('kind')}: {exc.message}"]
    return metadata_problems(obj)
