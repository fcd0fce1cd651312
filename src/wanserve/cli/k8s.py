"""`wanserve k8s ...`: render the manifests wanserve would apply, for review or `kubectl apply`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from wanserve.cli.app import app

__all__ = ["k8s_app"]

k8s_app = typer.Typer(help="Kubernetes job mode: render PyTorchJob and RBAC manifests.")
app.add_typer(k8s_app, name="k8s")


@k8s_app.command("render")
def render(
    spec: Annotated[
        Path, typer.Option("--spec", help="JSON body of POST /v1/videos (or a full VideoSpec)")
    ],
    template: Annotated[
        Path | None, typer.Option("--template", help="your PyTorchJob YAML (default: shipped)")
    ] = None,
    task_id: Annotated[str, typer.Option("--task-id", help="task id the job is named after")] = (
        "video_manual"
    ),
    attempt: Annotated[int, typer.Option("--attempt", min=1)] = 1,
    nnodes: Annotated[int | None, typer.Option("--nnodes", min=1)] = None,
    namespace: Annotated[str | None, typer.Option("--namespace", "-n")] = None,
    kind: Annotated[
        str, typer.Option("--kind", help="PyTorchJob (what the backend runs) or TrainJob (v2)")
    ] = "PyTorchJob",
) -> None:
    """Print the PyTorchJob wanserve would create for the spec in FILE (YAML on stdout)."""
    from wanserve.backends.kubernetes.manifests import render_for_cli
    from wanserve.domain.errors import WanserveError

    try:
        text = render_for_cli(spec, template, task_id, attempt, nnodes, namespace, kind)
    except WanserveError as exc:
        typer.echo(f"error: {exc.detail}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(text, nl=False)


@k8s_app.command("rbac")
def rbac(
    namespace: Annotated[str | None, typer.Option("--namespace", "-n")] = None,
) -> None:
    """Print the ServiceAccount, Role and RoleBinding the dispatcher needs (YAML on stdout)."""
    from wanserve.backends.kubernetes.manifests import rbac_yaml

    typer.echo(rbac_yaml(namespace), nl=False)
