from __future__ import annotations

import hashlib
from pathlib import Path

import av
import numpy as np
from PIL import Image

from wanserve.engine.video import to_uint8, write_mp4, write_poster


def test_mp4_is_h264_yuv420p_faststart_and_decodes_back(tmp_path: Path) -> None:
    ys, xs = np.mgrid[0:64, 0:96].astype(np.float32)
    smooth = np.stack([xs / 95, ys / 63, np.full_like(xs, 0.5)], axis=-1)  # chroma-friendly
    frames = to_uint8(np.repeat(smooth[None], 9, axis=0))
    video = write_mp4(frames, tmp_path / "v.mp4", fps=16)
    data = (tmp_path / "v.mp4").read_bytes()
    assert (video.frames, video.width, video.height, video.fps) == (9, 96, 64, 16)
    assert video.bytes == len(data) and video.sha256 == hashlib.sha256(data).hexdigest()
    assert video.duration == 9 / 16
    assert data.index(b"moov") < data.index(b"mdat")  # faststart: playable while downloading
    with av.open(str(tmp_path / "v.mp4")) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert stream.codec_context.pix_fmt == "yuv420p"
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(decoded) == 9
    assert np.abs(decoded[0].astype(int) - frames[0].astype(int)).mean() < 3


def test_odd_sides_are_cropped_to_even() -> None:
    assert to_uint8(np.zeros((2, 33, 35, 3), dtype=np.float32)).shape == (2, 32, 34, 3)


def test_poster_is_a_jpeg_of_the_frame(tmp_path: Path) -> None:
    frame = np.zeros((32, 48, 3), dtype=np.uint8)
    with Image.open(write_poster(frame, tmp_path / "p.jpg")) as image:
        assert image.format == "JPEG" and image.size == (48, 32)
