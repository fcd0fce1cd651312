"""What the release chose for what the settings and options leave unset, in words: the comment at
the head of `wanserve k8s render --deploy`'s YAML, so that a bare render shows its defaults (and
what the operator still creates: the store's Secret, the Redis) before anyone applies it."""

from __future__ import annotations

import textwrap

from wanserve.deploy.release import DATA_DIR, Release

__all__ = ["header", "notes"]

_WIDTH = 100


def notes(release: Release) -> list[str]:
    """One sentence per default the release took."""
    found = [_models(release), _artifacts(release), _job_outputs(release), _worker(release)]
    found += [_store(release), _queue(release)]
    return [note for note in found if note is not None]


def header(release: Release) -> str:
    """The notes as a YAML comment (empty when there are none)."""
    lines = []
    for note in notes(release):
        wrapped = textwrap.wrap(note, _WIDTH - 4, break_long_words=False, break_on_hyphens=False)
        lines += [f"# - {wrapped[0]}", *(f"#   {line}" for line in wrapped[1:])]
    if not lines:
        return ""
    title = "# wanserve k8s render --deploy: defaults taken for what is unset (docs/deploy.md)"
    return "\n".join([title, *lines]) + "\n"


def _models(release: Release) -> str | None:
    if release.settings.api.models is not None:
        return None
    return (
        f"api.models is unset: the API offers {', '.join(release.models)} (api.default_model "
        "and the models the worker's pools name; WANSERVE_API__MODELS in the ConfigMap). Set it "
        "to the models whose checkpoints the engines have."
    )


def _artifacts(release: Release) -> str | None:
    if release.artifacts_url.startswith("s3://") or release.data_claim is None:
        return None
    given = release.settings.artifacts.url
    source = f"a path on this machine ({given})" if given else "unset"
    if release.renders_claim:
        data = release.options.data
        storage = data.storage_class or "the cluster's default, which must offer ReadWriteMany"
        claim = (
            f"the PersistentVolumeClaim {release.data_claim} (ReadWriteMany, {data.size}; "
            f"StorageClass: {storage})"
        )
    else:
        claim = f"your claim {release.data_claim} (data.claim)"
    return (
        f"artifacts.url is {source}: the videos go to {release.artifacts_url} on {claim}, "
        f"mounted at {DATA_DIR} in the API and worker pods. Set artifacts_url to s3://... "
        "to keep them in S3 instead."
    )


def _job_outputs(release: Release) -> str | None:
    claim = release.job_outputs_claim
    if claim is None:
        return None
    kind = release.settings.kubernetes.job_kind
    return (
        f"the {kind}s' pods mount {claim} at {DATA_DIR} too (kubernetes.outputs_pvc) and write "
        "each video into the worker's work directory there."
    )


def _worker(release: Release) -> str | None:
    if release.options.worker.kind is not None:
        return None
    if release.worker_kind == "cpu":
        pools = ", ".join(sorted(release.backends))
        return f"worker.kind is unset: cpu (the worker dispatches to its {pools} pools)."
    gpu = release.settings.kubernetes.gpu_resource
    return (
        "worker.kind is unset: gpu (a local pool: the engine runs in the worker's pod, image "
        f"{release.engine_image}, {release.gpus} {gpu})."
    )


def _store(release: Release) -> str | None:
    secret = release.store_secret
    if secret is None or release.options.store.secret is not None:
        return None
    return (
        f"store.url is unset: the pods read the store's URL from the key {secret.key} of the "
        f"Secret {secret.name}, which you create in namespace {release.namespace} with a "
        "Postgres URL "
        "(postgresql+asyncpg://...; SQLite cannot be shared by several pods)."
    )


def _queue(release: Release) -> str | None:
    queue = release.options.queue
    if queue.url is not None or queue.secret is not None:
        return None
    return (
        f"queue.url is unset: kubernetes.redis_url, {release.queue_url}, which must reach a "
        f"Redis or Valkey (one node, not a cluster) from namespace {release.namespace}."
    )
