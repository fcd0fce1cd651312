"""What a pull asks huggingface_hub for: each component's configs, safetensors and tokenizer
files, and the model cards' repos."""

from __future__ import annotations

from fnmatch import fnmatch

from wanserve.domain.models import HUB_REPOS, MODELS
from wanserve.hub.pull import allow_patterns


def test_allow_patterns_take_the_components_loadable_files_only() -> None:
    patterns = allow_patterns(["vae", "tokenizer"])
    assert patterns[0] == "model_index.json"

    def wanted(path: str) -> bool:
        return any(fnmatch(path, pattern) for pattern in patterns)

    for path in (
        "model_index.json",
        "vae/config.json",
        "vae/diffusion_pytorch_model.safetensors",
        "tokenizer/spiece.model",
        "tokenizer/tokenizer.json",
    ):
        assert wanted(path), path
    for path in (
        "README.md",
        "assets/logo.json",  # not a component
        "vae/diffusion_pytorch_model.bin",
        "transformer/config.json",  # not one of the components asked for
    ):
        assert not wanted(path), path


def test_the_real_models_name_their_diffusers_repos() -> None:
    assert {card.id for card in HUB_REPOS.values()} == {
        card.id for card in MODELS.values() if not card.is_tiny
    }
    assert all(repo.endswith("-Diffusers") for repo in HUB_REPOS)
