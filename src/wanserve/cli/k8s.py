"""`wanserve k8s ...`: render the manifests wanserve would apply, for review or `kubectl apply`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from wanserve.cli.app import app

__all__ = ["k8s_app"]

k8s_app = typer.Typer(
    help="Kubernetes: render the PyTorchJob (job mode), the RayService (ray backend) and RBAC."
)
app.add_typer(k8s_app, name="k8s")

_TASK_ID = "video_manual"
_KIND = "PyTorchJob"


@k8s_app.command("render")
def render(
    spec: Annotated[
        Path | None,
        typer.Option("--spec", help="JSON body of POST /v1/videos (or a full VideoSpec)"),
    ] = None,
    backend: Annotated[
        Literal["kubernetes", "ray"],
        typer.Option(
            "--backend",
            help="kubernetes: the task's PyTorchJob; ray: the RayService of the ray backend",
        ),
    ] = "kubernetes",
    model: Annotated[
        list[str] | None,
        typer.Option("--model", help="ray: a model to serve, repeatable (default: the spec's)"),
    ] = None,
    template: Annotated[
        Path | None, typer.Option("--template", help="your PyTorchJob YAML (default: shipped)")
    ] = None,
    task_id: Annotated[str, typer.Option("--task-id", help="task id the job is named after")] = (
        _TASK_ID
    ),
    attempt: Annotated[int, typer.Option("--attempt", min=1)] = 1,
    nnodes: Annotated[
        int | None, typer.Option("--nnodes", min=1, help="pods per task (ray: per replica)")
    ] = None,
    namespace: Annotated[str | None, typer.Option("--namespace", "-n")] = None,
    kind: Annotated[
        str, typer.Option("--kind", help="PyTorchJob (what the backend runs) or TrainJob (v2)")
    ] = _KIND,
) -> None:
    """Print what wanserve would run for the spec (YAML on stdout): the task's PyTorchJob, or
    with --backend ray the RayService that serves its model."""
    from wanserve.domain.errors import InvalidRequest, WanserveError

    try:
        if backend == "ray":
            _only_for_kubernetes(template=template, task_id=task_id, attempt=attempt, kind=kind)
            text = _render_ray(spec, model or [], nnodes, namespace)
        else:
            from wanserve.backends.kubernetes.manifests import render_for_cli

            if model:
                raise InvalidRequest("--model", model[0], "applies to --backend ray only")
            if spec is None:
                raise InvalidRequest("--spec", None, "is required with --backend kubernetes")
            text = render_for_cli(spec, template, task_id, attempt, nnodes, namespace, kind)
    except WanserveError as exc:
        typer.echo(f"error: {exc.detail}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(text, nl=False)


def _only_for_kubernetes(**given: object) -> None:
    from wanserve.domain.errors import InvalidRequest

    defaults = {"template": None, "task_id": _TASK_ID, "attempt": 1, "kind": _KIND}
    for name, value in given.items():
        if value != defaults[name]:
            option = "--" + name.replace("_", "-")
            raise InvalidRequest(option, value, "applies to --backend kubernetes only")


def _render_ray(
    spec: Path | None, models: list[str], nnodes: int | None, namespace: str | None
) -> str:
    """The RayService of `models` (else the spec's model), from the settings with the options'
    overrides; imports neither ray nor torch."""
    from wanserve.backends.kubernetes.manifests import load_spec
    from wanserve.backends.ray.render import rayservice_yaml
    from wanserve.domain.errors import InvalidRequest
    from wanserve.settings import get_settings

    settings = get_settings()
    overrides = {
        k: v for k, v in {"nnodes": nnodes, "namespace": namespace}.items() if v is not None
    }
    kube = settings.kubernetes.model_copy(update=overrides)
    settings = settings.model_copy(update={"kubernetes": kube})
    if not models:
        if spec is None:
            raise InvalidRequest("--spec", None, "give --spec or --model")
        models = [load_spec(spec).model]
    return rayservice_yaml(settings, models)


@k8s_app.command("rbac")
def rbac(
    namespace: Annotated[str | None, typer.Option("--namespace", "-n")] = None,
) -> None:
    """Print the ServiceAccount, Role and RoleBinding the dispatcher needs (YAML on stdout)."""
    from wanserve.backends.kubernetes.manifests import rbac_yaml

    typer.echo(rbac_yaml(namespace), nl=False)
