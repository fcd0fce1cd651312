"""`wanserve model pull` and `wanserve model check`: real checkpoints in the models directory.

`pull REPO_ID` downloads one of the Wan2.2 diffusers repos the model cards name into
`<models_dir>/<model id>` (resumable, with progress bars; wanserve.hub.pull), then checks it
(wanserve.hub.check). Another repo needs `--any` and goes to `<models_dir>/<repo name>` or
`--out`. Exit status: 0 pulled and complete, 1 the hub failed or the checkpoint is incomplete,
2 a refused argument.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from wanserve.cli.engine import model_app

if TYPE_CHECKING:
    from wanserve.hub import Problem

__all__ = ["model_check", "model_pull"]


@model_app.command("pull")
def model_pull(
    repo_id: Annotated[
        str, typer.Argument(help="A diffusers-layout repo: Wan-AI/Wan2.2-TI2V-5B-Diffusers, ...")
    ],
    revision: Annotated[str, typer.Option(help="Branch, tag or commit.")] = "main",
    models_dir: Annotated[
        Path | None,
        typer.Option(help="Default: WANSERVE_ENGINE__MODELS_DIR, else <data dir>/models."),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Pull into this directory instead of the models dir.")
    ] = None,
    any_repo: Annotated[
        bool, typer.Option("--any", help="Also pull a repo that no model card names.")
    ] = False,
) -> None:
    """Download a Wan2.2 checkpoint (diffusers layout) from the hub, resumably, and check it.

    The hub is $HF_ENDPOINT's (token: $HF_TOKEN). Run it again to finish an interrupted pull.
    """
    import httpx

    from wanserve.hub import check_checkpoint, pull_checkpoint

    target = out or _models_dir(models_dir) / _model_dir_name(repo_id, any_repo)
    typer.echo(f"pulling {repo_id} ({revision}) into {target}")
    try:
        pulled = pull_checkpoint(repo_id, target, revision=revision)
    except (OSError, ValueError, httpx.HTTPError) as exc:
        typer.echo(f"error: could not pull {repo_id}: {_first_line(exc)}", err=True)
        raise typer.Exit(1) from None
    _report(target, check_checkpoint(target))
    names = ", ".join(pulled.components)
    typer.echo(f"pulled {repo_id} at commit {pulled.commit[:12]}: complete ({names})")


@model_app.command("check")
def model_check(
    path: Annotated[Path, typer.Argument(help="A checkpoint directory (diffusers layout).")],
) -> None:
    """Check that a checkpoint directory is complete: components, configs, shards."""
    from wanserve.hub import check_checkpoint

    _report(path, check_checkpoint(path))
    typer.echo(f"{path}: complete")


def _report(path: Path, problems: list[Problem]) -> None:
    """Exit 1 listing `problems`, if any."""
    if not problems:
        return
    typer.echo(f"error: {path} is not a complete checkpoint:", err=True)
    for problem in problems:
        typer.echo(f"  {problem}", err=True)
    raise typer.Exit(1)


def _models_dir(models_dir: Path | None) -> Path:
    if models_dir is not None:
        return models_dir
    from wanserve.settings import get_settings

    return get_settings().models_path()


def _model_dir_name(repo_id: str, any_repo: bool) -> str:
    """The card's model id for a known repo; the repo's own name with --any; else exit 2."""
    from wanserve.domain.models import HUB_REPOS

    card = HUB_REPOS.get(repo_id)
    if card is not None:
        return card.id
    if any_repo and repo_id.strip("/") and ".." not in repo_id:
        return repo_id.rstrip("/").rsplit("/", 1)[-1].lower()
    known = ", ".join(sorted(HUB_REPOS))
    rule = f"must be one of {known} (or pass --any)" if not any_repo else "must be a repo id"
    typer.echo(f"error: repo_id={repo_id!r} is invalid: {rule}", err=True)
    raise typer.Exit(2)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
