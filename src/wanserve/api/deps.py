"""FastAPI dependencies as `Annotated` aliases; everything comes from the app's `Runtime`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from wanserve.api.auth import Authenticator
from wanserve.api.keys import Principal
from wanserve.api.metrics import ApiMetrics
from wanserve.api.service import VideoService
from wanserve.api.submission import UploadLimits

__all__ = ["Caller", "CallerDep", "Runtime", "RuntimeDep", "get_caller", "get_runtime"]


@dataclass(frozen=True, slots=True)
class Runtime:
    """What create_app built, kept on `app.state.runtime` for the dependencies below."""

    videos: VideoService
    auth: Authenticator
    limits: UploadLimits
    default_model: str
    public_url: str | None
    metrics: ApiMetrics
    metrics_public: bool  # False: GET /metrics needs an admin key
    sse_poll_s: float
    sse_heartbeat_s: float


@dataclass(frozen=True, slots=True)
class Caller:
    """Who asks (`principal`, from the Authorization header) and what serves them."""

    runtime: Runtime
    principal: Principal

    @property
    def videos(self) -> VideoService:
        return self.runtime.videos


# These are `async def` although get_runtime never awaits: FastAPI runs a plain `def` dependency
# on its thread pool, a thread hop per dependency per request. The routes that need to know who
# asks take one Caller rather than a runtime and a principal: FastAPI resolves each dependency on
# each request (cache keys, scopes, parameters): with two, 18% of a submit's samples in the app
# under py-spy, 14% with one (docs/benchmarks.md).


async def get_runtime(request: Request) -> Runtime:
    return _runtime(request)


async def get_caller(request: Request) -> Caller:
    runtime = _runtime(request)
    principal = await runtime.auth.authenticate(request.headers.get("authorization"))
    return Caller(runtime, principal)


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
CallerDep = Annotated[Caller, Depends(get_caller)]
