"""The LoRA adapters a deployment offers, and the defaults their cards set (no torch).

An adapter is a directory `<loras dir>/<name>/` (its weights are read by the engine,
`wanserve.engine.loras`). Its optional card, `lora.json`, sets defaults a request takes unless it
sets them itself: a step-distilled LoRA says `{"num_inference_steps": 4, "guidance_scale": 1}`.
The API applies them before the model's own defaults (`with_lora_defaults`), so the stored spec
says what ran; the engine's CLI does the same for a task given on its command line.
"""

from __future__ import annotations

import json
from pathlib import Path

from wanserve.domain.errors import InvalidRequest
from wanserve.domain.models import MODELS
from wanserve.domain.spec import VideoRequest

__all__ = [
    "CARD_FIELDS",
    "CARD_FILE",
    "check_offered",
    "offered_names",
    "read_card",
    "with_lora_defaults",
]

CARD_FIELDS = ("num_inference_steps", "guidance_scale", "guidance_scale_2", "shift")
CARD_FILE = "lora.json"


def read_card(directory: Path | None, name: str) -> dict[str, float | int]:
    """The defaults `<directory>/<name>/lora.json` sets (empty without one).

    Raises InvalidRequest (field `loras`) for a card that is not a JSON object of CARD_FIELDS
    with numbers."""
    path = None if directory is None else Path(directory) / name / CARD_FILE
    if path is None or not path.is_file():
        return {}
    try:
        card = json.loads(path.read_text())
    except ValueError as exc:
        raise InvalidRequest("loras", name, f"its {CARD_FILE} must be JSON ({exc})") from None
    if not isinstance(card, dict):
        raise InvalidRequest("loras", name, f"its {CARD_FILE} must be a JSON object")
    unknown = set(card) - set(CARD_FIELDS)
    if unknown:
        rule = f"its {CARD_FILE} may set {', '.join(CARD_FIELDS)}, not {sorted(unknown)}"
        raise InvalidRequest("loras", name, rule)
    for field, value in card.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidRequest("loras", name, f"its {CARD_FILE} must set {field} to a number")
    return dict(card)


def with_lora_defaults(request: VideoRequest, directory: Path | None) -> VideoRequest:
    """`request` with what its adapters' cards set where the request sets nothing (the first
    adapter that sets a field wins; `guidance_scale_2` only for a two-expert model)."""
    defaults: dict[str, float | int] = {}
    for lora in request.loras or []:
        for field, value in read_card(directory, lora.name).items():
            defaults.setdefault(field, value)
    card = MODELS.get(request.model)
    if card is not None and card.guidance_scale_2 is None:
        defaults.pop("guidance_scale_2", None)
    unset = {f: v for f, v in defaults.items() if getattr(request, f) is None}
    return request.model_copy(update=unset)


def check_offered(request: VideoRequest, directory: Path) -> None:
    """Raises InvalidRequest (field `loras`) naming an adapter `directory` does not hold."""
    for lora in request.loras or []:
        if not (directory / lora.name).is_dir():
            offered = offered_names(directory)
            rule = (
                f"must name adapters this server offers: {', '.join(offered)}"
                if offered
                else "this server offers no LoRA adapters (see WANSERVE_ENGINE__LORAS_DIR)"
            )
            raise InvalidRequest("loras", lora.name, rule)


def offered_names(directory: Path) -> list[str]:
    """The adapters in `directory`, by name."""
    if not directory.is_dir():
        return []
    return sorted(p.name for p in directory.iterdir() if p.is_dir() and not p.name.startswith("."))
