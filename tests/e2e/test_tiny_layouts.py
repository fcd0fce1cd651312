"""Every Wan2.2 layout end to end: `wanserve up` with the real engine, driven by the openai SDK.

One tiny model per layout (A14B text-to-video, I2V-A14B and TI2V-5B image-to-video through
`input_reference`), each built on demand by the engine, each video downloaded and decoded; then a
LoRA adapter named through the SDK (a form field, NAME:SCALE) changes the A14B video, its card
sets the steps, and the same request without it gives the base video back.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np
import pytest
from openai import OpenAI, omit
from PIL import Image

from tests.e2e.conftest import Proc, free_port, wait_http
from tests.engine.lora_files import write_lora

pytestmark = [pytest.mark.integration, pytest.mark.slow]

LAYOUTS = [  # model id, size, whether it takes the image
    ("wan2.2-tiny", "32x32", False),
    ("wan2.2-tiny-i2v", "64x32", True),
    ("wan2.2-tiny-ti2v", "64x64", True),
]


def _png(width: int, height: int) -> bytes:
    ys, xs = np.mgrid[0:height, 0:width]
    pixels = np.stack([xs * 4 % 256, ys * 3 % 256, (xs + ys) % 256], -1).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def test_each_tiny_layout_makes_a_video_through_the_openai_sdk(
    procs: Callable[..., Proc], service_env: dict[str, str], tmp_path: Path
) -> None:
    port = free_port()
    up = ["up", "--host", "127.0.0.1", "--port", str(port), "--data-dir", str(tmp_path / "up")]
    loras = tmp_path / "loras"
    proc = procs(up, {**service_env, "WANSERVE_ENGINE__LORAS_DIR": str(loras)}, "up")
    wait_http(f"http://127.0.0.1:{port}/healthz", proc)
    client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="local", max_retries=0)
    served = [m.id for m in client.models.list()]
    for model, size, takes_image in LAYOUTS:
        assert model in served
        width, height = map(int, size.split("x"))
        image = ("first.png", io.BytesIO(_png(width, height)), "image/png")
        video = client.videos.create_and_poll(
            model=model,
            prompt="a paper boat on a rainy street",
            size=size,  # type: ignore[arg-type]
            input_reference=image if takes_image else omit,
            extra_body={"num_frames": 5, "num_inference_steps": 2, "seed": 3},
            poll_interval_ms=200,
        )
        assert video.status == "completed", (model, video.error, proc.text()[-4000:])
        parameters = (video.model_extra or {})["parameters"]
        assert (parameters["task"], parameters["seed"]) == ("i2v" if takes_image else "t2v", 3)
        path = tmp_path / f"{model}.mp4"
        path.write_bytes(client.videos.download_content(video.id).read())
        with av.open(str(path)) as container:
            frames = list(container.decode(video=0))
        assert len(frames) == 5 and (frames[0].width, frames[0].height) == (width, height)

    write_lora(loras, "detail", num_inference_steps=3)
    videos = {}
    base: dict[str, object] = {"num_inference_steps": 3}  # what the adapter's card says
    for name, extra in (("base", base), ("detail", {"loras": "detail:1.0"}), ("again", base)):
        video = client.videos.create_and_poll(
            model="wan2.2-tiny",
            prompt="a paper boat on a rainy street",
            size="32x32",  # type: ignore[arg-type]
            extra_body={"num_frames": 5, "seed": 3, **extra},
            poll_interval_ms=200,
        )
        assert video.status == "completed", (name, video.error, proc.text()[-4000:])
        videos[name] = (video, _decoded(client.videos.download_content(video.id).read()))
    parameters = (videos["detail"][0].model_extra or {})["parameters"]
    assert parameters["loras"] == [{"name": "detail", "scale": 1.0}]
    assert parameters["num_inference_steps"] == 3  # the card's, not the model's default
    assert (videos["again"][0].model_extra or {})["parameters"]["loras"] == []
    assert not np.array_equal(videos["detail"][1], videos["base"][1])
    np.testing.assert_array_equal(videos["again"][1], videos["base"][1])
    assert proc.stop() == 0, proc.text()[-12000:]


def _decoded(mp4: bytes) -> np.ndarray:
    with av.open(io.BytesIO(mp4), "r") as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
