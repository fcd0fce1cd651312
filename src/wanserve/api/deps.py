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

__all__ = ["PrincipalDep", "Runtime", "RuntimeDep", "ServiceDep", "get_runtime"]


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


# These are `async def` although they never await: FastAPI runs a plain `def` dependency on its
# thread pool, a thread hop per dependency per request.


async def get_runtime(request: Request) -> Runtime:
    return _runtime(request)


async def get_service(request: Request) -> VideoService:
    return _runtime(request).videos


async def get_principal(request: Request) -> Principal:
    return await _runtime(request).auth.authenticate(request.headers.get("authorization"))


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
ServiceDep = Annotated[VideoService, Depends(get_service)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]
