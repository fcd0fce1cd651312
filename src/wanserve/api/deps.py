"""FastAPI dependencies as `Annotated` aliases; everything comes from the app's `Runtime`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from wanserve.api.auth import Authenticator
from wanserve.api.keys import Principal
from wanserve.api.metrics import ApiMetrics
from wanserve.api.service import VideoService
from wanserve.api.submission import UploadLimits

__all__ = [
    "BearerDep",
    "Caller",
    "CallerDep",
    "Runtime",
    "RuntimeDep",
    "get_caller",
    "get_runtime",
]


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


_bearer = HTTPBearer(
    scheme_name="bearer",
    description="an API key (`wanserve keys create`)",
    auto_error=False,  # the Authenticator decides: keys may be optional on this server
)
BearerDep = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


async def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def get_caller(runtime: RuntimeDep, credentials: BearerDep) -> Caller:
    """The runtime and the principal of the request's bearer key (raises Unauthorized)."""
    secret = credentials.credentials if credentials is not None else None
    return Caller(runtime, await runtime.auth.authenticate(secret))


CallerDep = Annotated[Caller, Depends(get_caller)]
