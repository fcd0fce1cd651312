"""Write docs/configuration.md from settings.py: every WANSERVE_* variable, its default and the
comment beside its field. Run after changing settings.py: `python scripts/configuration_doc.py`.
"""

from __future__ import annotations

import ast
import io
import sys
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from wanserve.settings import Settings  # noqa: E402

SOURCE = ROOT / "src" / "wanserve" / "settings.py"
TARGET = ROOT / "docs" / "configuration.md"

HEADER = """# Configuration

wanserve reads its settings from `WANSERVE_*` environment variables (pydantic-settings). Groups
are joined with a double underscore: `WANSERVE_QUEUE__URL`, `WANSERVE_API__PORT`. `wanserve up`
flags (`--host`, `--port`, `--data-dir`, `--allow-open`) override the matching variables.

Embedded defaults need no variable at all: `wanserve up` starts Valkey under the data directory,
keeps SQLite and the videos there, and builds the tiny model on first run. Production sets at
least `WANSERVE_QUEUE__URL`, `WANSERVE_STORE__URL` and `WANSERVE_ARTIFACTS__URL`.

This file is generated from `src/wanserve/settings.py` by `python scripts/configuration_doc.py`
(a test fails when a setting is missing here).
"""


FALLBACK = {
    "WANSERVE_DATA_DIR": "where the embedded queue, SQLite, videos, models and logs live",
    "WANSERVE_ENVIRONMENT": "production refuses placeholder secrets",
    "WANSERVE_LOG_LEVEL": "DEBUG, INFO, WARNING or ERROR",
    "WANSERVE_API__HOST": "address the API and web page bind to",
    "WANSERVE_API__PORT": "port of the API and web page",
    "WANSERVE_API__MAX_IMAGE_BYTES": "largest input image upload",
    "WANSERVE_API__MAX_IMAGE_PIXELS": "largest input image (width x height)",
    "WANSERVE_QUEUE__PREFIX": "every queue key starts with this",
    "WANSERVE_QUEUE__HEARTBEAT_INTERVAL_S": "how often a worker renews its leases",
    "WANSERVE_ARTIFACTS__S3_ENDPOINT_URL": "S3-compatible endpoint (MinIO, SeaweedFS, ...)",
    "WANSERVE_ARTIFACTS__S3_REGION": "S3 region",
    "WANSERVE_ARTIFACTS__S3_ACCESS_KEY_ID": "S3 access key",
    "WANSERVE_ARTIFACTS__S3_SECRET_ACCESS_KEY": "S3 secret key",
    "WANSERVE_ARTIFACTS__PRESIGN_TTL_S": "lifetime of presigned download URLs",
    "WANSERVE_ENGINE__DEVICE": "where the engine runs",
    "WANSERVE_ENGINE__ULYSSES": "Ulysses sequence-parallel degree per task",
    "WANSERVE_ENGINE__CFG_PARALLEL": "run the two CFG branches on different ranks",
    "WANSERVE_ENGINE__FSDP": "shard the experts and text encoder with FSDP",
    "WANSERVE_DISPATCH__BACKEND": "where tasks run: local processes or Kubernetes jobs",
    "WANSERVE_DISPATCH__MAX_ATTEMPTS": "runs of a task before a retryable failure is final",
    "WANSERVE_DISPATCH__TASK_TIMEOUT_S": "a task running longer is stopped and fails (timeout)",
    "WANSERVE_DISPATCH__RETRY_BASE_DELAY_S": "first retry delay; doubles per attempt",
    "WANSERVE_DISPATCH__RETRY_MAX_DELAY_S": "cap of the retry delay",
    "WANSERVE_KUBERNETES__NAMESPACE": "namespace of the jobs",
    "WANSERVE_KUBERNETES__NNODES": "pods (nodes) per job",
    "WANSERVE_KUBERNETES__NPROC_PER_NODE": "torchrun processes per pod",
    "WANSERVE_KUBERNETES__GPUS_PER_NODE": "GPUs requested per pod",
    "WANSERVE_KUBERNETES__PRIORITY_CLASS": "priorityClassName of the pods",
    "WANSERVE_KUBERNETES__PENDING_TIMEOUT_S": "a job pending longer fails (retryable)",
    "WANSERVE_KUBERNETES__TTL_AFTER_FINISHED_S": "runPolicy.ttlSecondsAfterFinished",
    "WANSERVE_KUBERNETES__GPU_RESOURCE": "the GPU resource name",
    "WANSERVE_KUBERNETES__OUTPUTS_MOUNT": "where outputs_pvc is mounted",
    "WANSERVE_KUBERNETES__MODELS_MOUNT": "where models_pvc is mounted",
    "WANSERVE_KUBERNETES__CFG_PARALLEL": "CFG parallel in the pods",
    "WANSERVE_KUBERNETES__FSDP": "FSDP in the pods",
    "WANSERVE_KUBERNETES__CLEAN_POD_POLICY": "runPolicy.cleanPodPolicy",
    "WANSERVE_DISPATCH__RECONCILE_INTERVAL_S": "how often queue and store are reconciled and "
    "expired artifacts removed",
}


def comments() -> dict[tuple[str, str], str]:
    """(class name, field) -> its trailing comment, or the comment lines right above it."""
    text = SOURCE.read_text()
    trailing: dict[int, str] = {}
    standalone: dict[int, str] = {}
    for token in tokenize.generate_tokens(io.StringIO(text).readline):
        if token.type == tokenize.COMMENT:
            note = token.string.lstrip("# ").strip()
            alone = token.line.strip().startswith("#")
            (standalone if alone else trailing)[token.start[0]] = note
    found = {}
    for node in ast.walk(ast.parse(text)):
        if not isinstance(node, ast.ClassDef):
            continue
        for item in node.body:
            if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                above, line = [], item.lineno - 1
                while line in standalone:
                    above.insert(0, standalone[line])
                    line -= 1
                found[(node.name, item.target.id)] = trailing.get(item.lineno) or " ".join(above)
    return found


def rows() -> list[tuple[str, str, str, str]]:
    notes = comments()
    out = []
    for name, field in Settings.model_fields.items():
        group = field.annotation
        if isinstance(group, type) and hasattr(group, "model_fields"):
            for sub, subfield in group.model_fields.items():
                env = f"WANSERVE_{name.upper()}__{sub.upper()}"
                note = notes.get((group.__name__, sub)) or FALLBACK.get(env, "")
                out.append((env, _type(subfield.annotation), _default(subfield), note))
        else:
            env = f"WANSERVE_{name.upper()}"
            note = notes.get(("Settings", name)) or FALLBACK.get(env, "")
            out.append((env, _type(field.annotation), _default(field), note))
    return out


def _type(annotation: object) -> str:
    return (
        str(annotation)
        .replace("typing.", "")
        .replace("pathlib.", "")
        .replace("pydantic.types.", "")
        .replace("<class '", "")
        .replace("'>", "")
    )


def _default(field: object) -> str:
    factory = getattr(field, "default_factory", None)
    if factory is not None:
        return "~/.wanserve" if "home" in repr(factory) or "lambda" in repr(factory) else "…"
    value = getattr(field, "default", None)
    return "" if value is None else f"`{value}`"


def render() -> str:
    lines = [HEADER, "| variable | type | default | meaning |", "|---|---|---|---|"]
    for env, kind, default, note in rows():
        lines.append(
            f"| `{env}` | {kind.replace('|', '/')} | {default} | {note.replace('|', '/')} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    TARGET.write_text(render())
    print(f"wrote {TARGET.relative_to(ROOT)} ({len(rows())} settings)")  # noqa: T201
