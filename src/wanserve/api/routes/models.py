"""/v1/models: the served models, with the defaults and ranges a form needs.

Like OpenAI's, the list holds only what a request can use here; `?all=true` adds the other known
models (`available: false`), and `GET /v1/models/{id}` answers for any known id. Like every /v1
route (and OpenAI's /v1/models), they need a key where keys are required.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from wanserve.api.deps import ApiContext, CallerDep
from wanserve.api.images import FORMATS
from wanserve.api.problems import problem_responses
from wanserve.api.schemas import ImageUploadPublic, ModelPublic, ModelsPublic
from wanserve.domain.errors import NotFound
from wanserve.domain.models import MODELS

__all__ = ["router"]

router = APIRouter(prefix="/v1/models", tags=["models"])


@router.get("", responses=problem_responses(422, 503))
async def list_models(
    caller: CallerDep, include_all: Annotated[bool, Query(alias="all")] = False
) -> ModelsPublic:
    """The served models with sizes, defaults and ranges (the default one flagged); with
    all=true also the known models this server does not serve (`available: false`)."""
    context = caller.context
    served = context.videos.served.ids()
    shown = list(served) + ([m for m in MODELS if m not in served] if include_all else [])
    return ModelsPublic(
        data=[
            ModelPublic.from_card(
                MODELS[model_id],
                is_default=model_id == context.default_model,
                available=model_id in served,
                image_upload=_image_upload(context),
            )
            for model_id in shown
        ]
    )


@router.get("/{model_id}", responses=problem_responses(404, 503))
async def get_model(model_id: str, caller: CallerDep) -> ModelPublic:
    """One known model's card; `available` says whether this server serves it."""
    context = caller.context
    card = MODELS.get(model_id)
    if card is None:
        raise NotFound(
            f"no model {model_id!r}",
            errors=[
                {
                    "field": "model",
                    "value": model_id,
                    "rule": f"must be one of {', '.join(sorted(MODELS))}",
                }
            ],
        )
    return ModelPublic.from_card(
        card,
        is_default=card.id == context.default_model,
        available=card.id in context.videos.served.ids(),
        image_upload=_image_upload(context),
    )


def _image_upload(context: ApiContext) -> ImageUploadPublic:
    limits = context.limits
    return ImageUploadPublic(
        types=sorted(content_type for _, content_type in FORMATS.values()),
        max_bytes=limits.max_image_bytes,
        max_pixels=limits.max_image_pixels,
    )
