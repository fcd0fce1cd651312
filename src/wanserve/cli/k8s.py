"""`wanserve k8s ...`: render the manifests wanserve would apply, for review or `kubectl apply`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from wanserve.cli.app import app

__all__ = ["k8s_app"]

k8s_app = typer.Typer(
    help="Kubernetes: render the PyTorchJob (job mode), the RayService (ray backend), the "
    "InferenceService (kserve backend), RBAC, and the whole service (render --deploy)."
)
app.add_typer(k8s_app, name="k8s")

_TASK_ID = "video_manual"
_KIND = "PyTorchJob"
_KUBERNETES_DEFAULTS: dict[str, object] = {
    "template": None,
    "task_id": _TASK_ID,
    "attempt": 1,
    "kind": _KIND,
}
_KSERVE_DEFAULTS: dict[str, object] = {
    "kserve_mode": "serverless",
    "storage_uri": None,
    "prometheus_url": None,
}


@k8s_app.command("render")
def render(
    spec: Annotated[
        Path | None,
        typer.Option("--spec", help="JSON body of POST /v1/videos (or a full VideoSpec)"),
    ] = None,
    backend: Annotated[
        Literal["kubernetes", "ray", "kserve"],
        typer.Option(
            "--backend",
            help="kubernetes: the task's PyTorchJob; ray: the RayService of the ray backend; "
            "kserve: an InferenceService per model",
        ),
    ] = "kubernetes",
    model: Annotated[
        list[str] | None,
        typer.Option(
            "--model", help="ray, kserve: a model to serve, repeatable (default: the spec's)"
        ),
    ] = None,
    template: Annotated[
        Path | None, typer.Option("--template", help="your PyTorchJob YAML (default: shipped)")
    ] = None,
    task_id: Annotated[str, typer.Option("--task-id", help="task id the job is named after")] = (
        _TASK_ID
    ),
    attempt: Annotated[int, typer.Option("--attempt", min=1)] = 1,
    nnodes: Annotated[
        int | None,
        typer.Option("--nnodes", min=1, help="pods per task (ray: per replica; kserve: per model)"),
    ] = None,
    namespace: Annotated[str | None, typer.Option("--namespace", "-n")] = None,
    kind: Annotated[
        str, typer.Option("--kind", help="PyTorchJob (what the backend runs) or TrainJob (v2)")
    ] = _KIND,
    kserve_mode: Annotated[
        Literal["serverless", "raw"],
        typer.Option(
            "--kserve-mode",
            help="kserve: serverless (Knative scales on requests) or raw (a Deployment, KEDA)",
        ),
    ] = "serverless",
    storage_uri: Annotated[
        str | None,
        typer.Option(
            "--storage-uri",
            help="kserve: models from this URI (pvc://, s3://...: a folder of <model id>/) "
            "instead of kubernetes.models_pvc",
        ),
    ] = None,
    prometheus_url: Annotated[
        str | None,
        typer.Option(
            "--prometheus-url", help="kserve raw: the Prometheus KEDA reads wanserve's tasks from"
        ),
    ] = None,
    deploy: Annotated[
        bool,
        typer.Option(
            "--deploy",
            help="the whole service instead: API, worker, KEDA ScaledObject, RBAC, ConfigMap "
            "(docs/deploy.md)",
        ),
    ] = False,
    values: Annotated[
        Path | None, typer.Option("--values", help="--deploy: a YAML file of deploy options")
    ] = None,
    image: Annotated[
        str | None, typer.Option("--image", help="--deploy: the API (and cpu worker) image")
    ] = None,
    engine_image: Annotated[
        str | None,
        typer.Option("--engine-image", help="--deploy: the gpu worker's image (CUDA torch)"),
    ] = None,
    worker: Annotated[
        Literal["gpu", "cpu"] | None,
        typer.Option("--worker", help="--deploy: gpu (engine in the worker) or cpu (dispatch)"),
    ] = None,
) -> None:
    """Print what wanserve would run for the spec (YAML on stdout): the task's PyTorchJob, with
    --backend ray the RayService that serves its model, with --backend kserve its
    InferenceService."""
    from wanserve.domain.errors import InvalidRequest, WanserveError

    kserve: dict[str, Any] = {
        "kserve_mode": kserve_mode,
        "storage_uri": storage_uri,
        "prometheus_url": prometheus_url,
    }
    given: dict[str, object] = {"spec": spec, "model": model, "nnodes": nnodes}
    given |= {"template": template, "task_id": task_id, "attempt": attempt, "kind": kind}
    deploying: dict[str, object] = {"image": image, "engine_image": engine_image}
    deploying |= {"worker.kind": worker}
    try:
        if deploy:
            _only_for("kubernetes", _KSERVE_DEFAULTS, **kserve)
            _not_with_deploy(backend=backend, **given)
            text = _render_deploy(namespace, values, deploying)
            typer.echo(text, nl=False)
            return
        _only_with_deploy(values=values, image=image, engine_image=engine_image, worker=worker)
        if backend != "kserve":
            _only_for("kserve", _KSERVE_DEFAULTS, **kserve)
        if backend == "kubernetes":
            from wanserve.backends.kubernetes.manifests import render_for_cli

            if model:
                rule = "applies to --backend ray only (and kserve)"
                raise InvalidRequest("--model", model[0], rule)
            if spec is None:
                raise InvalidRequest("--spec", None, "is required with --backend kubernetes")
            text = render_for_cli(spec, template, task_id, attempt, nnodes, namespace, kind)
        else:
            job = {"template": template, "task_id": task_id, "attempt": attempt, "kind": kind}
            _only_for("kubernetes", _KUBERNETES_DEFAULTS, **job)
            if backend == "ray":
                text = _render_ray(spec, model or [], nnodes, namespace)
            else:
                text = _render_kserve(spec, model or [], nnodes, namespace, kserve)
    except WanserveError as exc:
        typer.echo(f"error: {exc.detail}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(text, nl=False)


def _only_for(backend: str, defaults: dict[str, object], **given: object) -> None:
    from wanserve.domain.errors import InvalidRequest

    for name, value in given.items():
        if value != defaults[name]:
            option = "--" + name.replace("_", "-")
            raise InvalidRequest(option, value, f"applies to --backend {backend} only")


_SERVICE_DEFAULTS: dict[str, object] = {
    **_KUBERNETES_DEFAULTS,
    "spec": None,
    "model": None,
    "nnodes": None,
    "backend": "kubernetes",
}


def _not_with_deploy(**given: object) -> None:
    from wanserve.domain.errors import InvalidRequest

    for name, value in given.items():
        if value != _SERVICE_DEFAULTS[name]:
            option = "--" + name.replace("_", "-")
            rule = "does not apply with --deploy (the worker's pools come from the settings)"
            raise InvalidRequest(option, value, rule)


def _only_with_deploy(**given: object) -> None:
    from wanserve.domain.errors import InvalidRequest

    for name, value in given.items():
        if value is not None:
            raise InvalidRequest("--" + name.replace("_", "-"), value, "applies to --deploy only")


def _render_deploy(namespace: str | None, values: Path | None, overrides: dict[str, object]) -> str:
    """The whole service from the settings and the deploy options (values file, then flags);
    imports neither kubernetes nor torch."""
    from wanserve.deploy import load_options, service_yaml
    from wanserve.settings import get_settings

    options = load_options(values, namespace=namespace, **overrides)
    return service_yaml(get_settings(), options)


def _render_ray(
    spec: Path | None, models: list[str], nnodes: int | None, namespace: str | None
) -> str:
    """The RayService of `models` (else the spec's model), from the settings with the options'
    overrides; imports neither ray nor torch."""
    from wanserve.backends.ray.render import rayservice_yaml
    from wanserve.settings import get_settings

    settings = get_settings()
    overrides = {
        k: v for k, v in {"nnodes": nnodes, "namespace": namespace}.items() if v is not None
    }
    kube = settings.kubernetes.model_copy(update=overrides)
    settings = settings.model_copy(update={"kubernetes": kube})
    return rayservice_yaml(settings, _models_or_spec(models, spec))


def _render_kserve(
    spec: Path | None,
    models: list[str],
    nnodes: int | None,
    namespace: str | None,
    options: dict[str, Any],
) -> str:
    """An InferenceService per model of `models` (else the spec's model), from the settings
    with the options' overrides (`--nnodes` N > 1: each with its worker pods, decision 0013);
    imports neither kserve nor torch."""
    from wanserve.backends.kserve.render import KServeOptions, inferenceservices_yaml
    from wanserve.settings import get_settings

    settings = get_settings()
    if namespace is not None:
        kube = settings.kubernetes.model_copy(update={"namespace": namespace})
        settings = settings.model_copy(update={"kubernetes": kube})
    kserve = KServeOptions(
        options["kserve_mode"], options["storage_uri"], options["prometheus_url"], nnodes or 1
    )
    return inferenceservices_yaml(settings, _models_or_spec(models, spec), kserve)


def _models_or_spec(models: list[str], spec: Path | None) -> list[str]:
    from wanserve.backends.kubernetes.manifests import load_spec
    from wanserve.domain.errors import InvalidRequest

    if models:
        return models
    if spec is None:
        raise InvalidRequest("--spec", None, "give --spec or --model")
    return [load_spec(spec).model]


@k8s_app.command("rbac")
def rbac(
    namespace: Annotated[str | None, typer.Option("--namespace", "-n")] = None,
) -> None:
    """Print the ServiceAccount, Role and RoleBinding the dispatcher needs (YAML on stdout)."""
    from wanserve.backends.kubernetes.manifests import rbac_yaml

    typer.echo(rbac_yaml(namespace), nl=False)
