"""Reading an MP4 back gives what the engine's own writer says it wrote."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from wanserve.engine.generate_py.video_probe import poster_from_video, probe_video
from wanserve.engine.video import write_mp4


def test_probe_reads_back_what_write_mp4_wrote(tmp_path: Path) -> None:
    frames = np.zeros((9, 48, 64, 3), dtype=np.uint8)
    frames[:, :, :, 0] = np.arange(9, dtype=np.uint8)[:, None, None] * 25
    written = write_mp4(frames, tmp_path / "v.mp4", fps=24)
    assert probe_video(tmp_path / "v.mp4") == written


def test_poster_is_the_first_frame(tmp_path: Path) -> None:
    frames = np.full((5, 32, 32, 3), 200, dtype=np.uint8)
    frames[0] = 20
    write_mp4(frames, tmp_path / "v.mp4", fps=16)
    poster = poster_from_video(tmp_path / "v.mp4", tmp_path / "poster.jpg")
    with Image.open(poster) as image:
        assert image.size == (32, 32)
        assert abs(float(np.asarray(image).mean()) - 20) < 8  # the dark first frame, not 200
