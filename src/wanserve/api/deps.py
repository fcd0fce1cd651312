"""FastAPI dependencies as `Annotated` aliases; everything comes from the app's `ApiContext`."""

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
    "ApiContext",
    "BearerDep",
    "Caller",
    "CallerDep",
    "ContextDep",
    "get_caller",
    "get_context",
]


@dataclass(frozen=True, slots=True)
class ApiContext:
    """What create_app built, kept on `app.state.context` for the dependencies below."""

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

    context: ApiContext
    principal: Principal

    @property
    def videos(self) -> VideoService:
        return self.context.videos


_bearer = HTTPBearer(
    scheme_name="bearer",
    description="an API key (`wanserve keys create`)",
    auto_error=False,  # the Authenticator decides: keys may be optional on this server
)
BearerDep = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


async def get_context(request: Request) -> ApiContext:
    context: ApiContext = request.app.state.context
    return context


ContextDep = Annotated[ApiContext, Depends(get_context)]


async def get_caller(context: ContextDep, credentials: BearerDep) -> Caller:
    """The context and the principal of the request's bearer key (raises Unauthorized)."""
    secret = credentials.credentials if credentials is not None else None
    return Caller(context, await context.auth.authenticate(secret))


CallerDep = Annotated[Caller, Depends(get_caller)]
