"""/v1/models: the served models, with the defaults and ranges a form needs."""

from __future__ import annotations

from fastapi import APIRouter

from wanserve.api.deps import RuntimeDep
from wanserve.api.schemas import ModelPublic, ModelsPublic
from wanserve.domain.errors import NotFound
from wanserve.domain.models import MODELS

__all__ = ["router"]

router = APIRouter(prefix="/v1/models", tags=["models"])


@router.get("")
async def list_models(runtime: RuntimeDep) -> ModelsPublic:
    """Every model id with its sizes, defaults and parameter ranges; the default one flagged."""
    return ModelsPublic(
        data=[
            ModelPublic.from_card(card, is_default=card.id == runtime.default_model)
            for card in MODELS.values()
        ]
    )


@router.get("/{model_id}")
async def get_model(model_id: str) -> ModelPublic:
    """One model's card."""
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
    return ModelPublic.from_card(card)
