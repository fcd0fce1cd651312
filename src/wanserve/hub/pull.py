"""Download a diffusers-layout Wan2.2 checkpoint from a model hub into a directory.

huggingface_hub moves the bytes ($HF_ENDPOINT picks the hub, $HF_TOKEN the token). The revision
is resolved to one commit first, so every file comes from the same commit; then model_index.json
says which components the pipeline has, and only their files are fetched: JSON configs,
safetensors weights and tokenizer files (no .bin/.pth duplicates, no README assets).

Resumable: huggingface_hub records each finished file's commit and etag under
`<target>/.cache/huggingface/`, so a pull run again after an interruption fetches only what is
missing; a connection dropped in the middle of a file is resumed with an HTTP Range request.
Progress bars (huggingface_hub's tqdm, on stderr) show files and bytes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from wanserve.hub.check import INDEX_FILE, components

__all__ = ["COMPONENT_FILES", "Pulled", "allow_patterns", "pull_checkpoint"]

# What a component folder holds that the pipeline loads: configs, weights, tokenizer files
COMPONENT_FILES = ("*.json", "*.safetensors", "*.model", "*.txt")


@dataclass(frozen=True)
class Pulled:
    repo_id: str
    commit: str
    path: Path
    components: tuple[str, ...]


def allow_patterns(component_names: Iterable[str]) -> list[str]:
    """huggingface_hub's allow_patterns for a checkpoint with these component folders."""
    names = sorted(component_names)
    return [INDEX_FILE] + [f"{name}/{files}" for name in names for files in COMPONENT_FILES]


def pull_checkpoint(
    repo_id: str, target: Path, *, revision: str = "main", max_workers: int = 8
) -> Pulled:
    """Fetch `repo_id` at `revision` into `target` (created; files already there and current
    are kept). Raises huggingface_hub's errors (OSError, ValueError subclasses) and httpx's."""
    from huggingface_hub import HfApi, hf_hub_download, snapshot_download

    commit = HfApi().model_info(repo_id, revision=revision).sha
    if commit is None:
        raise OSError(f"the hub named no commit for {repo_id} at {revision}")
    index = hf_hub_download(repo_id, INDEX_FILE, revision=commit, local_dir=target)
    names = components(json.loads(Path(index).read_text()))
    snapshot_download(
        repo_id,
        revision=commit,
        local_dir=target,
        allow_patterns=allow_patterns(names),
        max_workers=max_workers,
    )
    return Pulled(repo_id, commit, target, tuple(sorted(names)))
