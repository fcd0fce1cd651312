"""Which models (and LoRA adapters) this server serves: `GET /v1/models` lists the models and
`POST /v1/videos` accepts only them.

An explicit list (`settings.api.models`) wins: in production the API usually cannot see the
engines' disk. Without one, the tiny models are served (the engine builds them on demand) plus
every model with a diffusers checkpoint at `<models_dir>/<id>/model_index.json`; the directory is
looked at on each call, so a checkpoint copied in later is served without a restart.

The adapters are the directories of the loras directory (`engine.loras_dir`, else `loras/` beside
the models), also looked at on each call; a request naming one takes the defaults its card sets
(`wanserve.lora_cards`). An API that cannot see the engines' disk needs a copy of the adapters'
directories with their `lora.json` cards (the weights stay with the engines).
"""

from __future__ import annotations

from pathlib import Path

from wanserve.domain.errors import InvalidRequest
from wanserve.domain.models import MODELS, TINY_MODEL_IDS
from wanserve.domain.spec import VideoRequest
from wanserve.lora_cards import check_offered, offered_names, with_lora_defaults
from wanserve.settings import Settings

__all__ = ["ServedModels"]


class ServedModels:
    def __init__(
        self, explicit: list[str] | None, models_dir: Path, loras_dir: Path | None = None
    ) -> None:
        """Raises InvalidRequest (field `api.models`) for an id that is no known model."""
        for model_id in explicit or ():
            if model_id not in MODELS:
                raise InvalidRequest(
                    "api.models", model_id, f"must list ids among {', '.join(sorted(MODELS))}"
                )
        self._explicit = tuple(dict.fromkeys(explicit)) if explicit is not None else None
        self._models_dir = models_dir
        self._loras_dir = loras_dir if loras_dir is not None else models_dir.parent / "loras"

    @classmethod
    def from_settings(cls, settings: Settings) -> ServedModels:
        return cls(settings.api.models, settings.models_path(), settings.loras_path())

    def adapters(self) -> tuple[str, ...]:
        """The LoRA adapters requests may name."""
        return tuple(offered_names(self._loras_dir))

    def with_adapters(self, request: VideoRequest) -> VideoRequest:
        """`request` with its adapters' card defaults; raises InvalidRequest (field `loras`) for
        an adapter this server does not offer, or a card it cannot read."""
        if not request.loras:
            return request
        check_offered(request, self._loras_dir)
        return with_lora_defaults(request, self._loras_dir)

    def ids(self) -> tuple[str, ...]:
        """The served ids, in the registry's order (explicit lists keep theirs)."""
        if self._explicit is not None:
            return self._explicit
        return tuple(model_id for model_id in MODELS if self._is_served(model_id))

    def rule(self) -> str:
        served = self.ids()
        if not served:
            return "this server serves no model (see WANSERVE_API__MODELS)"
        return f"must be a model this server serves: {', '.join(served)}"

    def check(self, model_id: str) -> None:
        """Raises InvalidRequest naming `model`, the id and the served ids unless it is served."""
        if self._explicit is not None:
            served = model_id in self._explicit
        else:  # one stat for this model, not one per known model
            served = model_id in MODELS and self._is_served(model_id)
        if not served:
            raise InvalidRequest("model", model_id, self.rule())

    def _is_served(self, model_id: str) -> bool:
        if model_id in TINY_MODEL_IDS:
            return True
        return (self._models_dir / model_id / "model_index.json").is_file()
