"""The blocking Ray and Serve calls of one worker process (run in threads by the backend).

A process joins one Ray: `connect` starts a Ray of its own on 127.0.0.1 (`owns`) or joins the
cluster that `ray.address` names; `deploy` gives the handle of a model's application (deploying
it where the cluster does not run it yet); `replicas` reads Serve's replica counts; `disconnect`
leaves (stopping Serve and Ray when they are ours) and forgets Serve's client, so that a new
connection starts clean.
"""

from __future__ import annotations

import contextlib
import logging
import socket
from dataclasses import dataclass
from typing import Any

from wanserve.backends.ray.config import AppArgs
from wanserve.settings import RaySettings

__all__ = ["Replicas", "ServeClient"]

log = logging.getLogger(__name__)


@dataclass
class Replicas:
    """One application's replicas, as Serve's status last said."""

    running: int = 0
    starting: int = 0
    stopping: int = 0


class ServeClient:
    def __init__(self, settings: RaySettings) -> None:
        self.settings = settings
        self.owns = not settings.address  # the worker started this Ray: it stops it too
        self.gpus_per_rank = 0.0  # what a rank's bundle takes on this cluster

    def reachable(self) -> bool:
        """Whether something listens at the cluster's address (a Ray of our own: it will).
        `ray.init` would block for minutes on an address where nothing answers."""
        address = self.settings.address
        if self.owns or address == "auto":
            return True
        host, _, port = address.removeprefix("ray://").rpartition(":")
        try:
            with socket.create_connection((host or "127.0.0.1", int(port)), timeout=2.0):
                return True
        except (OSError, ValueError):
            return False

    def connect(self) -> None:
        import ray
        from ray import serve
        from ray._private import auto_init_hook

        # Never let a Ray call start a Ray of its own (its default when the cluster is gone):
        # only this method connects, to the cluster the settings name.
        auto_init_hook.enable_auto_connect = False
        ray_settings = self.settings
        if self.owns:
            ray.init(
                address="local",  # a new Ray, even where another one runs on this machine
                namespace=ray_settings.namespace,
                num_cpus=ray_settings.num_cpus,
                object_store_memory=ray_settings.object_store_mb * 1024 * 1024,
                include_dashboard=False,
                _node_ip_address="127.0.0.1",
                log_to_driver=False,
                configure_logging=False,
            )
            serve.start(proxy_location="Disabled")  # the worker uses handles only
        elif not ray.is_initialized():  # a process joins its cluster once
            ray.init(
                address=ray_settings.address, namespace=ray_settings.namespace, log_to_driver=False
            )
        gpus = ray_settings.gpus_per_rank
        if gpus is None:
            resources = ray.cluster_resources()  # type: ignore[no-untyped-call]
            gpus = 1.0 if resources.get("GPU", 0) >= 1 else 0.0
        self.gpus_per_rank = gpus
        log.info("connected to Ray %s", ray_settings.address or "(local, 127.0.0.1)")

    def deploy(self, name: str, args: AppArgs) -> Any:
        """The handle of application `name`: the one the cluster runs (a RayService, another
        worker), else `args` deployed now (always, on a Ray of our own)."""
        from ray import serve

        from wanserve.backends.ray.app import build

        if not self.owns and name in serve.status().applications:
            return serve.get_app_handle(name)
        return serve.run(build(args.model_dump()), name=name, route_prefix=None)

    def replicas(self, names: dict[str, str]) -> dict[str, Replicas]:
        """Replica counts per key of `names` (key -> application name)."""
        from ray import serve

        applications = serve.status().applications
        found: dict[str, Replicas] = {}
        for key, name in names.items():
            app = applications.get(name)
            counts = Replicas()
            for deployment in app.deployments.values() if app is not None else ():
                states = {str(k).split(".")[-1]: v for k, v in deployment.replica_states.items()}
                counts.running += states.get("RUNNING", 0)
                counts.starting += states.get("STARTING", 0) + states.get("PENDING_MIGRATION", 0)
                counts.stopping += states.get("STOPPING", 0)
            found[key] = counts
        return found

    def disconnect(self) -> None:
        import ray
        from ray import serve
        from ray.serve import context

        with contextlib.suppress(Exception):
            if self.owns:
                serve.shutdown()  # type: ignore[no-untyped-call]
        with contextlib.suppress(Exception):
            ray.shutdown()
        context._set_global_client(None)  # type: ignore[no-untyped-call]
