"""The few Kubernetes API calls the backend makes, as coroutines over the official client.

The official `kubernetes` client is synchronous; each call runs in a worker thread
(`asyncio.to_thread`) with a client-side timeout, and objects stay plain dicts (the JSON the API
server sent) so render, watch and the tests all speak the same shape. The job kind sits behind
`JobKind` (where the kind lives in the API, its engine container, how its rank-0 pod is found):
PyTorchJob (Training Operator v1) or Trainer v2's TrainJob, chosen by `kubernetes.job_kind`.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from wanserve.domain.errors import BackendUnavailable, Conflict, InvalidRequest, NotFound
from wanserve.settings import KubernetesSettings

__all__ = ["JOB_KINDS", "PYTORCHJOB", "TRAINJOB", "JobKind", "KubeClient", "ListFn", "Obj"]

Obj = dict[str, Any]
ListFn = Callable[..., Any]


@dataclass(frozen=True, slots=True)
class JobKind:
    """Where a job kind lives in the API and what its pods look like (the one seam between
    PyTorchJob and TrainJob: everything else reads conditions and pods the same way)."""

    group: str
    version: str
    plural: str
    kind: str
    container: str  # the engine's container in every pod (its log is read on a failure)
    # Labels (or annotations) that mark the rank-0 pod, whose last log lines a failure carries.
    rank0: tuple[tuple[str, str], ...] = ()
    rank0_name: str | None = None  # "{job}"-based name of that pod when it is fixed

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}"

    def rank0_pod(self, job: str, pods: list[Obj]) -> str | None:
        """The name of `job`'s rank-0 pod among `pods` (or by its fixed name), else None."""
        for pod in pods:
            meta = pod.get("metadata") or {}
            marks = {**(meta.get("annotations") or {}), **(meta.get("labels") or {})}
            if self.rank0 and all(marks.get(key) == value for key, value in self.rank0):
                return str(meta["name"])
        return self.rank0_name.format(job=job) if self.rank0_name else None


# Training Operator v1: pods <job>-master-0 and <job>-worker-<i>, container `pytorch`.
PYTORCHJOB = JobKind(
    "kubeflow.org",
    "v1",
    "pytorchjobs",
    "PyTorchJob",
    container="pytorch",
    rank0=(("training.kubeflow.org/replica-type", "master"),),
    rank0_name="{job}-master-0",
)
# Trainer v2: the TrainJob's JobSet (same name) runs one indexed Job per replicated job; the
# trainer's is `node`, container `node`, pods <job>-node-0-<index>-<random>; node rank 0 is
# completion index 0 (the torch plugin sets PET_NODE_RANK from it).
TRAINJOB = JobKind(
    "trainer.kubeflow.org",
    "v1alpha1",
    "trainjobs",
    "TrainJob",
    container="node",
    rank0=(
        ("jobset.sigs.k8s.io/replicatedjob-name", "node"),
        ("batch.kubernetes.io/job-completion-index", "0"),
    ),
)
JOB_KINDS = {k.kind: k for k in (PYTORCHJOB, TRAINJOB)}


class KubeClient:
    """Namespaced calls for one job kind and its pods; every error becomes a WanserveError."""

    def __init__(
        self,
        api_client: Any,
        namespace: str,
        kind: JobKind = PYTORCHJOB,
        request_timeout_s: float = 30.0,
    ) -> None:
        from kubernetes import client

        self.api_client = api_client
        self.namespace = namespace
        self.kind = kind
        self.timeout = request_timeout_s
        self._custom = client.CustomObjectsApi(api_client)
        self._core = client.CoreV1Api(api_client)

    @classmethod
    def connect(cls, settings: KubernetesSettings) -> KubeClient:
        """In-cluster config inside a pod (unless a kubeconfig is named), else the kubeconfig."""
        from kubernetes import client, config

        if settings.kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
            configuration = client.Configuration()
            config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
            api_client = client.ApiClient(configuration)
        else:
            path = str(settings.kubeconfig) if settings.kubeconfig else None
            api_client = config.new_client_from_config(config_file=path)  # type: ignore[no-untyped-call]
        kind = JOB_KINDS[settings.job_kind]
        return cls(api_client, settings.namespace, kind, settings.request_timeout_s)

    def close(self) -> None:
        self.api_client.close()

    # -- the list functions watches use (sync; called from the informer thread) --------

    def list_jobs_fn(self) -> ListFn:
        k = self.kind
        return _bind(
            self._custom.list_namespaced_custom_object, k.group, k.version, self.namespace, k.plural
        )

    def list_pods_fn(self) -> ListFn:
        return _bind(self._core.list_namespaced_pod, self.namespace)

    # -- calls -------------------------------------------------------------------------

    async def create_job(self, manifest: Obj) -> Obj:
        k = self.kind
        return await self._call(
            self._custom.create_namespaced_custom_object,
            k.group,
            k.version,
            self.namespace,
            k.plural,
            manifest,
            what=f"create {k.kind} {manifest['metadata']['name']}",
        )

    async def get_job(self, name: str) -> Obj | None:
        k = self.kind
        try:
            return await self._call(
                self._custom.get_namespaced_custom_object,
                k.group,
                k.version,
                self.namespace,
                k.plural,
                name,
                what=f"get {k.kind} {name}",
            )
        except NotFound:
            return None

    async def list_jobs(self, selector: str) -> list[Obj]:
        k = self.kind
        body = await self._call(
            self._custom.list_namespaced_custom_object,
            k.group,
            k.version,
            self.namespace,
            k.plural,
            label_selector=selector,
            what=f"list {k.plural}",
        )
        return list(body.get("items") or [])

    async def list_pods(self, selector: str) -> list[Obj]:
        body = await self._call(
            self._core.list_namespaced_pod,
            self.namespace,
            label_selector=selector,
            what="list pods",
        )
        return list(body.get("items") or [])

    async def delete_job(self, name: str, propagation: str = "Foreground") -> bool:
        """Delete `name` (dependents first with Foreground); False when it was already gone."""
        from kubernetes import client

        k = self.kind
        try:
            await self._call(
                self._custom.delete_namespaced_custom_object,
                k.group,
                k.version,
                self.namespace,
                k.plural,
                name,
                body=client.V1DeleteOptions(propagation_policy=propagation),
                what=f"delete {k.kind} {name}",
            )
        except NotFound:
            return False
        return True

    async def pod_log_tail(self, pod: str, lines: int = 20) -> str:
        try:
            return str(
                await asyncio.to_thread(
                    self._core.read_namespaced_pod_log,
                    pod,
                    self.namespace,
                    container=self.kind.container,
                    tail_lines=lines,
                    _request_timeout=self.timeout,
                )
            )
        except Exception:  # a log is a courtesy; its absence is not an error
            return ""

    async def _call(self, fn: ListFn, *args: Any, what: str, **kwargs: Any) -> Obj:
        from kubernetes.client.exceptions import ApiException

        kwargs.update(_preload_content=False, _request_timeout=self.timeout)
        try:
            response = await asyncio.to_thread(fn, *args, **kwargs)
        except ApiException as exc:
            raise _error(exc, what) from exc
        except Exception as exc:  # urllib3 / socket errors: the API server is unreachable
            raise BackendUnavailable(f"cannot {what}: {exc}") from exc
        body: Obj = json.loads(response.data or b"{}")
        return body


def _bind(fn: ListFn, *args: Any) -> ListFn:
    def call(**kwargs: Any) -> Any:
        return fn(*args, **kwargs)

    # The watch helper reads the docstring of the function it streams to find the return type.
    call.__doc__ = fn.__doc__
    return call


def _error(exc: Any, what: str) -> Exception:
    try:
        message = json.loads(exc.body or "{}").get("message") or exc.reason
    except ValueError:
        message = exc.reason
    if exc.status == 404:
        return NotFound(f"cannot {what}: {message}")
    if exc.status == 409:
        return Conflict(f"cannot {what}: {message}")
    if exc.status in (400, 422):
        return InvalidRequest("manifest", what, f"the API server refused it: {message}")
    if exc.status in (401, 403):
        return BackendUnavailable(
            f"cannot {what}: {message} (does the dispatcher's ServiceAccount have the RBAC in "
            "wanserve/deploy/rbac.yaml?)"
        )
    return BackendUnavailable(f"cannot {what}: HTTP {exc.status} {message}")
