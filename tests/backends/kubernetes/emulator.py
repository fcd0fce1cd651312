"""An in-process Kubernetes API for the backend's tests: kmock's KubernetesEmulator, extended.

`ClusterEmulator` serves pytorchjobs and pods the way an API server does, as far as wanserve
relies on it: 201 on create with uid/resourceVersion/creationTimestamp stamped; 422 for
objects the CRD check rejects (strict schema + CEL, `tests/backends/kubernetes/crd.py`); 409
for a name in use; 404; label selectors; one global resourceVersion; watches that replay every
change after a given resourceVersion, answer 410 Gone once history is compacted, honour
`timeoutSeconds`, and can be cut mid-stream; foreground deletion (dependents first, then the
owner). kmock supplies the HTTP server, request parsing, discovery and error rendering.

`TrainingOperator` scripts what the Kubeflow training operator, the scheduler, the kubelet and
Kueue would do to a job: create its pods, mark them unschedulable, pulling, running, OOMKilled,
evicted, on a lost node, and move the job's conditions. Tests call it step by step.
`TrainerV2` plays Kubeflow Trainer v2 and JobSet for a TrainJob through the same steps: it
builds the pods from the referenced ClusterTrainingRuntime the way Trainer, JobSet and the Job
controller do (a JobSet named after the TrainJob, an indexed Job `<name>-node-0` per replicated
job, pods `<name>-node-0-<index>-<random>` carrying JobSet's and the Job controller's labels, the
TrainJob's runtime patch merged in, the torch plugin's PET_* env), owner references
TrainJob -> JobSet -> Job -> Pod (so foreground deletion takes them in that order), and the
conditions Trainer copies from the JobSet (Complete / Failed, Suspended).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import datetime
import json
import uuid
from collections.abc import Callable
from typing import Any

import aiohttp.web
import attrs
from kmock import KubernetesEmulator, KubernetesError, Request

Obj = dict[str, Any]
Key = tuple[str, str, str]  # (plural, namespace, name)
JOBS, TRAINJOBS, PODS = "pytorchjobs", "trainjobs", "pods"
JOBSETS, BATCH_JOBS = "jobsets", "jobs"
_API = {
    JOBS: ("kubeflow.org/v1", "PyTorchJob"),
    TRAINJOBS: ("trainer.kubeflow.org/v1alpha1", "TrainJob"),
    JOBSETS: ("jobset.x-k8s.io/v1alpha2", "JobSet"),
    BATCH_JOBS: ("batch/v1", "Job"),
    PODS: ("v1", "Pod"),
}


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _matches(obj: Obj, selector: str | None) -> bool:
    labels = obj.get("metadata", {}).get("labels") or {}
    for term in filter(None, (selector or "").split(",")):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key) == value:
                return False
        elif "=" in term:
            key, value = term.split("=", 1)
            if labels.get(key.rstrip("=")) != value:
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


@attrs.define(kw_only=True)
class ClusterEmulator(KubernetesEmulator):
    validators: dict[str, Callable[[Obj], list[str]]] = attrs.field(factory=dict)
    store: dict[Key, Obj] = attrs.field(factory=dict, init=False)
    log: list[tuple[int, str, str, Obj]] = attrs.field(factory=list, init=False)
    calls: list[tuple[str, str, dict[str, str], Any]] = attrs.field(factory=list, init=False)
    logs: dict[str, str] = attrs.field(factory=dict, init=False)  # pod name -> its log
    _rv: int = attrs.field(default=100, init=False)
    _compacted: int = attrs.field(default=0, init=False)
    _changed: asyncio.Condition = attrs.field(factory=asyncio.Condition, init=False)
    _streams: set[aiohttp.web.StreamResponse] = attrs.field(factory=set, init=False)

    async def _handle(self, request: Request) -> aiohttp.web.StreamResponse:
        plural = request.resource.plural if request.resource is not None else None
        if plural not in _API or request.action is None:
            return await super()._handle(request)  # discovery and the rest: kmock's
        self.calls.append(
            (str(request.action.value), request.url.path, dict(request.params), request.data)
        )
        action = request.action.value
        if plural == PODS and request.subresource == "log":
            log = self.logs.get(request.name or "")
            pod = self.store.get(self._key(request, PODS))
            if log is None or pod is None:
                raise KubernetesError(status=404, reason="NotFound", message="no log")
            container = request.params.get("container")
            if container not in {c["name"] for c in pod["spec"].get("containers") or []}:
                message = f"container {container} is not valid for pod {request.name}"
                raise KubernetesError(status=400, reason="BadRequest", message=message)
            return aiohttp.web.Response(text=log)
        if action == "WATCH":
            return await self._watch(request, plural)
        handler = {
            "CREATE": self._create,
            "FETCH": self._fetch,
            "LIST": self._list,
            "DELETE": self._delete,
        }.get(action)
        if handler is None:
            raise KubernetesError(status=405, reason="MethodNotAllowed", message=action)
        status, body = await handler(request, plural)
        return aiohttp.web.json_response(body, status=status)

    # -- state changes (also used by TrainingOperator) ------------------------------------

    async def _record(self, plural: str, kind: str, obj: Obj) -> None:
        self.log.append((int(obj["metadata"]["resourceVersion"]), plural, kind, copy.deepcopy(obj)))
        async with self._changed:
            self._changed.notify_all()

    def _bump(self, obj: Obj) -> None:
        self._rv += 1
        obj["metadata"]["resourceVersion"] = str(self._rv)

    async def save(self, plural: str, obj: Obj) -> Obj:
        """Store `obj` (ADDED when new, else MODIFIED) with a new resourceVersion."""
        meta = obj["metadata"]
        key = (plural, meta["namespace"], meta["name"])
        kind = "MODIFIED" if key in self.store else "ADDED"
        if kind == "ADDED":
            meta.setdefault("uid", str(uuid.uuid4()))
            meta.setdefault("creationTimestamp", _now())
            meta.setdefault("generation", 1)
            api_version, obj_kind = _API[plural]
            obj.setdefault("apiVersion", api_version)
            obj.setdefault("kind", obj_kind)
        self._bump(obj)
        self.store[key] = obj
        await self._record(plural, kind, obj)
        return obj

    async def remove(self, plural: str, namespace: str, name: str) -> None:
        obj = self.store.pop((plural, namespace, name))
        self._bump(obj)
        await self._record(plural, "DELETED", obj)

    def find(self, plural: str, namespace: str, name: str) -> Obj | None:
        return self.store.get((plural, namespace, name))

    def items(self, plural: str, namespace: str | None = None) -> list[Obj]:
        return [
            o for (p, ns, _), o in self.store.items() if p == plural and namespace in (None, ns)
        ]

    def compact(self) -> None:
        """Forget history: a watch from an older resourceVersion now gets 410 Gone."""
        self._compacted = self._rv
        self.log.clear()

    def cut_watches(self) -> int:
        """Drop every open watch connection mid-stream (as a proxy or API server restart does)."""
        count = 0
        for stream in list(self._streams):
            transport = stream._req.transport if stream._req is not None else None
            if transport is not None:
                transport.abort()
                count += 1
        return count

    # -- verbs -------------------------------------------------------------------------

    def _key(self, request: Request, plural: str, name: str | None = None) -> Key:
        return (plural, request.namespace or "default", name or request.name or "")

    async def _create(self, request: Request, plural: str) -> tuple[int, Obj]:
        obj = copy.deepcopy(request.data)
        if not isinstance(obj, dict):
            raise KubernetesError(status=400, reason="BadRequest", message="body is not an object")
        meta = obj.setdefault("metadata", {})
        meta.setdefault("namespace", request.namespace or "default")
        validate = self.validators.get(plural)
        problems = validate(obj) if validate is not None else []
        if problems:
            raise KubernetesError(
                status=422,
                reason="Invalid",
                message=f"{_API[plural][1]}.{_API[plural][0]} {meta.get('name')!r} is invalid: "
                + "; ".join(problems[:5]),
                details={"causes": [{"message": p} for p in problems]},
            )
        if self._key(request, plural, meta.get("name")) in self.store:
            raise KubernetesError(
                status=409, reason="AlreadyExists", message=f"{meta['name']} already exists"
            )
        return 201, await self.save(plural, obj)

    async def _fetch(self, request: Request, plural: str) -> tuple[int, Obj]:
        obj = self.store.get(self._key(request, plural))
        if obj is None:
            raise KubernetesError(
                status=404, reason="NotFound", message=f"{request.name} not found"
            )
        return 200, obj

    async def _list(self, request: Request, plural: str) -> tuple[int, Obj]:
        selector = request.params.get("labelSelector")
        items = [
            o
            for (p, ns, _), o in self.store.items()
            if p == plural and (request.namespace in (None, ns)) and _matches(o, selector)
        ]
        api_version, kind = _API[plural]
        meta = {"resourceVersion": str(self._rv)}
        return 200, {
            "apiVersion": api_version,
            "kind": f"{kind}List",
            "metadata": meta,
            "items": items,
        }

    async def _delete(self, request: Request, plural: str) -> tuple[int, Obj]:
        key = self._key(request, plural)
        obj = self.store.get(key)
        if obj is None:
            raise KubernetesError(
                status=404, reason="NotFound", message=f"{request.name} not found"
            )
        policy = (
            (request.data or {}).get("propagationPolicy")
            if isinstance(request.data, dict)
            else None
        )
        if obj["metadata"].get("deletionTimestamp"):
            return 200, obj
        if policy == "Foreground":
            obj["metadata"]["deletionTimestamp"] = _now()
            obj["metadata"]["finalizers"] = ["foregroundDeletion"]
            await self.save(plural, obj)
            answer = copy.deepcopy(obj)
            asyncio.get_running_loop().create_task(self._collect(key))
            return 200, answer
        await self.remove(*key)
        await self._delete_dependents(obj)
        return 200, obj

    async def _delete_dependents(self, owner: Obj) -> None:
        """Foreground: each dependent's own dependents first (pods before their Job ...)."""
        uid = owner["metadata"]["uid"]
        for key, obj in list(self.store.items()):
            refs = obj["metadata"].get("ownerReferences") or []
            if any(r.get("uid") == uid for r in refs) and key in self.store:
                await self._delete_dependents(obj)
                await self.remove(*key)

    async def _collect(self, key: Key) -> None:
        """The garbage collector's foreground deletion: dependents first, then the owner."""
        await asyncio.sleep(0)
        owner = self.store.get(key)
        if owner is None:
            return
        await self._delete_dependents(owner)
        await self.remove(*key)

    async def _watch(self, request: Request, plural: str) -> aiohttp.web.StreamResponse:
        params = request.params
        selector = params.get("labelSelector")
        since = params.get("resourceVersion") or ""
        timeout = float(params.get("timeoutSeconds") or 3600)
        raw_request = request._raw_request
        assert raw_request is not None
        response = aiohttp.web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(raw_request)
        self._streams.add(response)

        def wanted(p: str, obj: Obj) -> bool:
            ns = obj["metadata"].get("namespace")
            return p == plural and request.namespace in (None, ns) and _matches(obj, selector)

        async def send(kind: str, obj: Obj) -> None:
            await response.write(json.dumps({"type": kind, "object": obj}).encode() + b"\n")

        try:
            if since in ("", "0"):
                for (p, _, _), obj in list(self.store.items()):
                    if wanted(p, obj):
                        await send("ADDED", obj)
                cursor = self._rv
            elif int(since) < self._compacted:
                status = {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "status": "Failure",
                    "code": 410,
                    "reason": "Expired",
                    "message": f"too old resource version: {since}",
                }
                await send("ERROR", status)
                return response
            else:
                cursor = int(since)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            while loop.time() < deadline:
                for rv, p, kind, obj in list(self.log):
                    if rv > cursor and wanted(p, obj):
                        await send(kind, obj)
                cursor = max([cursor, *(rv for rv, *_ in self.log)])
                transport = raw_request.transport
                if transport is None or transport.is_closing():
                    break  # the client went away: end now, not at timeoutSeconds
                async with self._changed:
                    # short waits: a client that leaves while nothing changes is noticed soon
                    wait = min(0.2, deadline - loop.time())
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._changed.wait(), max(wait, 0))
            return response
        except (ConnectionResetError, RuntimeError):
            return response
        finally:
            self._streams.discard(response)
            if not response.prepared or raw_request.transport is not None:
                try:
                    await response.write_eof()
                except (ConnectionResetError, RuntimeError):
                    pass


def _container_status(container: str, state: Obj, *, ready: bool = False) -> Obj:
    return {
        "state": state,
        "name": container,
        "ready": ready,
        "restartCount": 0,
        "image": "img",
        "imageID": "",
    }


class TrainingOperator:
    """What the training operator, scheduler, kubelet and Kueue would do, one step per call
    (for a PyTorchJob; `TrainerV2` for a TrainJob)."""

    plural, kind, container = JOBS, "PyTorchJob", "pytorch"

    def __init__(self, cluster: ClusterEmulator, namespace: str = "default") -> None:
        self.cluster = cluster
        self.namespace = namespace

    def job(self, name: str) -> Obj:
        job = self.cluster.find(self.plural, self.namespace, name)
        assert job is not None, f"no {self.kind} {name}"
        return job

    def pods(self, name: str) -> list[Obj]:
        return [
            p
            for p in self.cluster.items(PODS)
            if p["metadata"]["labels"].get("training.kubeflow.org/job-name") == name
        ]

    def rank0(self, name: str) -> str:
        """The name of the pod whose log a failed job's error carries (the Master)."""
        return f"{name}-master-0"

    async def wait_for_job(self, name: str | None = None, timeout: float = 10.0) -> Obj:
        """The job named `name` (or the only wanserve job) once it exists."""

        async def found() -> Obj:
            while True:
                jobs = [
                    j
                    for j in self.cluster.items(self.plural)
                    if name in (None, j["metadata"]["name"])
                ]
                if jobs:
                    return jobs[0]
                await asyncio.sleep(0.01)

        return await asyncio.wait_for(found(), timeout)

    async def until_gone(self, name: str, timeout: float = 10.0) -> None:
        async def gone() -> None:
            while self.cluster.find(self.plural, self.namespace, name) is not None:
                await asyncio.sleep(0.01)

        await asyncio.wait_for(gone(), timeout)

    async def condition(self, name: str, kind: str, reason: str = "", message: str = "") -> None:
        job = copy.deepcopy(self.job(name))
        status = job.setdefault("status", {})
        conditions = [c for c in status.get("conditions", []) if c["type"] != kind]
        if kind in ("Running", "Succeeded", "Failed", "Restarting"):
            for c in conditions:
                if c["type"] in ("Running", "Restarting"):
                    c["status"] = "False"
        conditions.append(
            {
                "type": kind,
                "status": "True",
                "reason": reason or f"PyTorchJob{kind}",
                "message": message or f"PyTorchJob {name} is {kind.lower()}.",
                "lastUpdateTime": _now(),
                "lastTransitionTime": _now(),
            }
        )
        status["conditions"] = conditions
        await self.cluster.save(self.plural, job)

    async def create_pods(self, name: str) -> list[Obj]:
        """Created: one Pending pod per replica, labelled as the operator labels them."""
        job = self.job(name)
        await self.condition(name, "Created", "PyTorchJobCreated")
        pods = []
        for role, replica in job["spec"]["pytorchReplicaSpecs"].items():
            for index in range(replica.get("replicas", 1)):
                labels = dict(replica["template"].get("metadata", {}).get("labels") or {})
                labels.update(
                    {
                        "training.kubeflow.org/job-name": name,
                        "training.kubeflow.org/replica-type": role.lower(),
                        "training.kubeflow.org/replica-index": str(index),
                    }
                )
                pod = {
                    "metadata": {
                        "name": f"{name}-{role.lower()}-{index}",
                        "namespace": self.namespace,
                        "labels": labels,
                        "ownerReferences": [
                            {
                                "apiVersion": "kubeflow.org/v1",
                                "kind": "PyTorchJob",
                                "name": name,
                                "uid": job["metadata"]["uid"],
                                "controller": True,
                            }
                        ],
                    },
                    "spec": copy.deepcopy(replica["template"]["spec"]),
                    "status": {"phase": "Pending"},
                }
                pods.append(await self.cluster.save(PODS, pod))
        return pods

    async def _pods_status(self, name: str, status: Obj, only: str | None = None) -> None:
        for pod in self.pods(name):
            if only is None or pod["metadata"]["name"] == only:
                pod = copy.deepcopy(pod)
                pod["status"] = copy.deepcopy(status)
                await self.cluster.save(PODS, pod)

    async def unschedulable(self, name: str) -> None:
        message = "0/4 nodes are available: 4 Insufficient nvidia.com/gpu."
        await self._pods_status(
            name,
            {
                "phase": "Pending",
                "conditions": [
                    {
                        "type": "PodScheduled",
                        "status": "False",
                        "reason": "Unschedulable",
                        "message": message,
                    }
                ],
            },
        )

    async def pulling(self, name: str) -> None:
        waiting = _container_status(self.container, {"waiting": {"reason": "ContainerCreating"}})
        await self._pods_status(
            name,
            {
                "phase": "Pending",
                "conditions": [{"type": "PodScheduled", "status": "True"}],
                "containerStatuses": [waiting],
            },
        )

    async def image_pull_error(self, name: str) -> None:
        waiting = _container_status(
            self.container,
            {
                "waiting": {
                    "reason": "ImagePullBackOff",
                    "message": 'Back-off pulling image "ghcr.io/x/y:nope"',
                }
            },
        )
        await self._pods_status(name, {"phase": "Pending", "containerStatuses": [waiting]})

    async def _pods_running(self, name: str) -> None:
        state = _container_status(self.container, {"running": {"startedAt": _now()}}, ready=True)
        await self._pods_status(name, {"phase": "Running", "containerStatuses": [state]})

    async def _pods_succeeded(self, name: str) -> None:
        state = _container_status(
            self.container, {"terminated": {"exitCode": 0, "reason": "Completed"}}
        )
        await self._pods_status(name, {"phase": "Succeeded", "containerStatuses": [state]})

    async def _pods_exited(self, name: str, code: int) -> None:
        self.cluster.logs[self.rank0(name)] = f"Traceback ...\nRuntimeError: exit {code}\n"
        state = _container_status(
            self.container, {"terminated": {"exitCode": code, "reason": "Error"}}
        )
        await self._pods_status(name, {"phase": "Failed", "containerStatuses": [state]})

    async def running(self, name: str) -> None:
        await self.condition(name, "Running", "PyTorchJobRunning")
        await self._pods_running(name)

    async def succeeded(self, name: str) -> None:
        await self._pods_succeeded(name)
        await self.condition(name, "Succeeded", "PyTorchJobSucceeded")

    async def oom_killed(self, name: str) -> None:
        state = _container_status(
            self.container, {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}
        )
        await self._pods_status(
            name, {"phase": "Failed", "containerStatuses": [state]}, only=self.rank0(name)
        )

    async def exited(self, name: str, code: int) -> None:
        await self._pods_exited(name, code)
        await self.condition(
            name,
            "Failed",
            "PyTorchJobFailed",
            f"PyTorchJob {name} is failed because 1 Master replica(s) failed.",
        )

    async def evicted(self, name: str) -> None:
        await self._pods_status(
            name,
            {
                "phase": "Failed",
                "reason": "Evicted",
                "message": "The node was low on resource: memory.",
            },
        )

    async def node_lost(self, name: str) -> None:
        await self._pods_status(
            name,
            {
                "phase": "Unknown",
                "reason": "NodeLost",
                "message": "Node gpu-7 which was running pod is unresponsive",
            },
        )

    async def suspended(self, name: str) -> None:
        await self.condition(name, "Suspended", "JobSuspended", "PyTorchJob is suspended (Kueue)")

    async def admitted(self, name: str) -> None:
        job = copy.deepcopy(self.job(name))
        for c in job.get("status", {}).get("conditions", []):
            if c["type"] == "Suspended":
                c["status"] = "False"
        job["spec"]["runPolicy"]["suspend"] = False
        await self.cluster.save(self.plural, job)

    async def delete_externally(self, name: str) -> None:
        """`kubectl delete <kind> NAME`: the pods go with it."""
        job = self.job(name)
        await self.cluster.remove(self.plural, self.namespace, name)
        await self.cluster._delete_dependents(job)


# What Trainer v2's torch plugin injects into the trainer container (constants.TorchEnv*), the
# port of its headless Service, and the downward-API path PET_NODE_RANK reads.
_TORCH_PORT = 29400
_COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"
_TRAINER_ANCESTOR = ("trainer.kubeflow.org/trainjob-ancestor-step", "trainer")


def _owner(obj: Obj) -> Obj:
    api_version, kind = obj["apiVersion"], obj["kind"]
    name, uid = obj["metadata"]["name"], obj["metadata"]["uid"]
    return {
        "apiVersion": api_version,
        "kind": kind,
        "name": name,
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _merge_named(base: list[Obj], patch: list[Obj], key: str = "name") -> list[Obj]:
    """A strategic merge of a list keyed by `key`: patched items merged, new ones appended."""
    out = [copy.deepcopy(item) for item in base]
    for item in patch:
        for i, existing in enumerate(out):
            if existing.get(key) == item.get(key):
                out[i] = _merge_obj(existing, item)
                break
        else:
            out.append(copy.deepcopy(item))
    return out


_LIST_KEYS = {
    "replicatedJobs": "name",
    "containers": "name",
    "volumes": "name",
    "env": "name",
    "volumeMounts": "mountPath",
}


def _merge_obj(base: Obj, patch: Obj) -> Obj:
    out = copy.deepcopy(base)
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge_obj(out[key], value)
        elif isinstance(value, list) and key in _LIST_KEYS:
            out[key] = _merge_named(out.get(key) or [], value, _LIST_KEYS[key])
        else:
            out[key] = copy.deepcopy(value)
    return out


class TrainerV2(TrainingOperator):
    """What Trainer v2, JobSet, the Job controller, the scheduler and Kueue do to a TrainJob."""

    plural, kind, container = TRAINJOBS, "TrainJob", "node"

    def __init__(
        self, cluster: ClusterEmulator, runtimes: dict[str, Obj], namespace: str = "default"
    ) -> None:
        super().__init__(cluster, namespace)
        self.runtimes = runtimes  # ClusterTrainingRuntimes by name

    def pods(self, name: str) -> list[Obj]:
        return [
            p
            for p in self.cluster.items(PODS)
            if p["metadata"]["labels"].get("jobset.sigs.k8s.io/jobset-name") == name
        ]

    def rank0(self, name: str) -> str:
        """Node rank 0: the trainer Job's pod of completion index 0."""
        for pod in self.pods(name):
            labels = pod["metadata"]["labels"]
            if (
                labels.get(_COMPLETION_INDEX) == "0"
                and labels.get("jobset.sigs.k8s.io/replicatedjob-name") == self.container
            ):
                return str(pod["metadata"]["name"])
        raise AssertionError(f"no rank-0 pod of TrainJob {name}")

    async def condition(self, name: str, kind: str, reason: str = "", message: str = "") -> None:
        """A metav1.Condition as Trainer sets them (no lastUpdateTime)."""
        job = copy.deepcopy(self.job(name))
        status = job.setdefault("status", {})
        conditions = [c for c in status.get("conditions", []) if c["type"] != kind]
        conditions.append(
            {
                "type": kind,
                "status": "True",
                "reason": reason or kind,
                "message": message or f"TrainJob {name} is {kind.lower()}",
                "lastTransitionTime": _now(),
            }
        )
        status["conditions"] = conditions
        await self.cluster.save(self.plural, job)

    async def create_pods(self, name: str) -> list[Obj]:
        """Trainer's JobSet from the runtime (+ the TrainJob's trainer block and runtime patches),
        then JobSet's indexed Job per replicated job, then the Job controller's pods."""
        trainjob = self.job(name)
        spec = trainjob["spec"]
        runtime = self.runtimes[spec["runtimeRef"]["name"]]
        template = copy.deepcopy(runtime["spec"]["template"])
        jobset_labels: dict[str, str] = dict(template.get("metadata", {}).get("labels") or {})
        for patch in spec.get("runtimePatches") or []:
            patched = (patch.get("trainingRuntimeSpec") or {}).get("template") or {}
            jobset_labels.update((patched.get("metadata") or {}).get("labels") or {})
            if "spec" in patched:
                template["spec"] = _merge_obj(template["spec"], patched["spec"])
        jobset = await self.cluster.save(
            JOBSETS,
            {
                "metadata": {
                    "name": name,
                    "namespace": self.namespace,
                    "labels": jobset_labels,
                    "ownerReferences": [_owner(trainjob)],
                },
                "spec": template["spec"],
            },
        )
        pods = []
        for rjob in template["spec"]["replicatedJobs"]:
            pods += await self._job_pods(trainjob, jobset, rjob)
        return pods

    async def _job_pods(self, trainjob: Obj, jobset: Obj, rjob: Obj) -> list[Obj]:
        name, rname = trainjob["metadata"]["name"], rjob["name"]
        job_template = copy.deepcopy(rjob["template"])
        trainer = (job_template.get("metadata", {}).get("labels") or {}).get(
            _TRAINER_ANCESTOR[0]
        ) == _TRAINER_ANCESTOR[1]
        policy = self.runtimes[trainjob["spec"]["runtimeRef"]["name"]]["spec"].get("mlPolicy") or {}
        nodes = (trainjob["spec"].get("trainer") or {}).get("numNodes")
        count = (nodes or policy.get("numNodes", 1)) if trainer else 1
        job_name = f"{name}-{rname}-0"
        jobset_marks = {
            "jobset.sigs.k8s.io/jobset-name": name,
            "jobset.sigs.k8s.io/jobset-uid": jobset["metadata"]["uid"],
            "jobset.sigs.k8s.io/replicatedjob-name": rname,
            "jobset.sigs.k8s.io/replicatedjob-replicas": "1",
            "jobset.sigs.k8s.io/job-index": "0",
            "jobset.sigs.k8s.io/job-global-index": "0",
            "jobset.sigs.k8s.io/job-key": uuid.uuid5(uuid.NAMESPACE_DNS, job_name).hex,
            "jobset.sigs.k8s.io/restart-attempt": "0",
        }
        job = await self.cluster.save(
            BATCH_JOBS,
            {
                "metadata": {
                    "name": job_name,
                    "namespace": self.namespace,
                    "labels": {
                        **(job_template.get("metadata", {}).get("labels") or {}),
                        **jobset_marks,
                    },
                    "ownerReferences": [_owner(jobset)],
                },
                "spec": {**job_template["spec"], "completionMode": "Indexed", "completions": count},
            },
        )
        pod_template = job_template["spec"]["template"]
        pods = []
        for index in range(count):
            batch_marks = {
                "batch.kubernetes.io/controller-uid": job["metadata"]["uid"],
                "batch.kubernetes.io/job-name": job_name,
                "controller-uid": job["metadata"]["uid"],
                "job-name": job_name,
                _COMPLETION_INDEX: str(index),
            }
            labels = {**(pod_template.get("metadata", {}).get("labels") or {}), **jobset_marks}
            pod_spec = copy.deepcopy(pod_template["spec"])
            pod_spec.setdefault("restartPolicy", "OnFailure")  # JobSet's webhook default
            pod_spec["hostname"], pod_spec["subdomain"] = f"{job_name}-{index}", name
            if trainer:
                self._fill_trainer(pod_spec, trainjob)
            pod = {
                "metadata": {
                    "name": f"{job_name}-{index}-{uuid.uuid4().hex[:5]}",
                    "namespace": self.namespace,
                    "labels": {**labels, **batch_marks},
                    "annotations": {**jobset_marks, _COMPLETION_INDEX: str(index)},
                    "ownerReferences": [_owner(job)],
                },
                "spec": pod_spec,
                "status": {"phase": "Pending"},
            }
            pods.append(await self.cluster.save(PODS, pod))
        return pods

    def _fill_trainer(self, pod_spec: Obj, trainjob: Obj) -> None:
        """The trainer block into container `node`, then the torch plugin's PET_* env."""
        name, trainer = trainjob["metadata"]["name"], trainjob["spec"].get("trainer") or {}
        runtime = self.runtimes[trainjob["spec"]["runtimeRef"]["name"]]
        policy = runtime["spec"].get("mlPolicy") or {}
        nodes = trainer.get("numNodes") or policy.get("numNodes", 1)
        nproc = trainer.get("numProcPerNode") or (policy.get("torch") or {}).get(
            "numProcPerNode", "auto"
        )
        for container in pod_spec["containers"]:
            if container["name"] != self.container:
                continue
            for field in ("image", "command", "args"):
                if field in trainer:
                    container[field] = trainer[field]
            if "resourcesPerNode" in trainer:
                container["resources"] = copy.deepcopy(trainer["resourcesPerNode"])
            rank = {"fieldRef": {"fieldPath": f"metadata.annotations['{_COMPLETION_INDEX}']"}}
            injected: list[Obj] = [
                {"name": "PET_NNODES", "value": str(nodes)},
                {"name": "PET_NPROC_PER_NODE", "value": str(nproc)},
                {"name": "PET_NODE_RANK", "valueFrom": rank},
                {"name": "PET_MASTER_ADDR", "value": f"{name}-node-0-0.{name}"},
                {"name": "PET_MASTER_PORT", "value": str(_TORCH_PORT)},
            ]
            env = _merge_named(container.get("env") or [], trainer.get("env") or [])
            container["env"] = _merge_named(env, injected)
            container["ports"] = _merge_named(
                container.get("ports") or [], [{"containerPort": _TORCH_PORT}], "containerPort"
            )

    async def running(self, name: str) -> None:
        await self._pods_running(name)  # TrainJob has no Running condition

    async def succeeded(self, name: str) -> None:
        await self._pods_succeeded(name)
        await self.condition(name, "Complete", "AllJobsCompleted", "jobset completed successfully")

    async def exited(self, name: str, code: int) -> None:
        await self._pods_exited(name, code)
        await self.condition(
            name,
            "Failed",
            "FailedJobs",
            f"jobset failed due to one or more job failures (first failed job: {name}-node-0)",
        )

    async def suspended(self, name: str) -> None:
        await self.condition(name, "Suspended", "Suspended", "TrainJob is suspended")

    async def admitted(self, name: str) -> None:
        """Kueue clears spec.suspend; Trainer turns its Suspended condition False (Resumed)."""
        job = copy.deepcopy(self.job(name))
        job["spec"]["suspend"] = False
        for c in job.get("status", {}).get("conditions", []):
            if c["type"] == "Suspended":
                c.update(status="False", reason="Resumed", message="TrainJob is resumed")
        await self.cluster.save(self.plural, job)
