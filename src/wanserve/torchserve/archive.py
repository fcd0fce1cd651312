"""`wanserve torchserve archive`: the `.mar` TorchServe loads wanserve's handler from.

The archive holds the handler's entry module (wanserve.torchserve.entry), the model it serves
(`wanserve.json`) and its TorchServe model config: one worker (it holds the engine; a second
would load a second engine), batches of one, a response timeout well above one request's wait
(requests are short: a task is followed over many, see the handler). It holds no weights: the
engine reads the checkpoint from the models directory (WANSERVE_ENGINE__MODELS_DIR), as every
wanserve engine does, so one archive serves any copy of the model. wanserve itself must be
installed in TorchServe's Python.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from wanserve import __version__
from wanserve.domain.errors import InvalidRequest
from wanserve.domain.models import get_model
from wanserve.torchserve import entry
from wanserve.torchserve.handler import ARCHIVE_CONFIG

__all__ = ["MODEL_CONFIG", "build_archive"]

# TorchServe's per-model config (model-config.yaml in the archive)
MODEL_CONFIG = """\
minWorkers: 1
maxWorkers: 1
batchSize: 1
maxBatchDelay: 0
responseTimeout: 120
startupTimeout: 600
"""


def build_archive(model: str, out: Path, *, force: bool = False) -> Path:
    """Write `out`/MODEL.mar for `model` and return its path; raises InvalidRequest."""
    from model_archiver.model_archiver_config import ModelArchiverConfig
    from model_archiver.model_packaging import generate_model_archive

    model_id = get_model(model).id
    path = out / f"{model_id}.mar"
    if path.exists() and not force:
        raise InvalidRequest("--out", str(path), "exists already (--force replaces it)")
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / ARCHIVE_CONFIG
        config.write_text(json.dumps({"model": model_id, "wanserve": __version__}))
        model_config = Path(tmp) / "model-config.yaml"
        model_config.write_text(MODEL_CONFIG)
        generate_model_archive(
            ModelArchiverConfig(
                model_name=model_id,
                handler=str(Path(entry.__file__)),
                version=__version__,
                extra_files=str(config),
                config_file=str(model_config),
                export_path=str(out),
                force=force,
            )
        )
    return path
