"""Frames to a browser-playable MP4 (H.264, yuv420p, faststart) and a JPEG poster."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

__all__ = ["VideoFile", "to_uint8", "write_mp4", "write_poster"]


@dataclass(frozen=True)
class VideoFile:
    path: Path
    bytes: int
    sha256: str
    frames: int
    fps: int
    width: int
    height: int

    @property
    def duration(self) -> float:
        return self.frames / self.fps


def to_uint8(frames: np.ndarray) -> np.ndarray:
    """Float frames in [0, 1] (frames, height, width, 3) as uint8, cropped to even sides."""
    frames = frames[:, : frames.shape[1] // 2 * 2, : frames.shape[2] // 2 * 2]
    pixels: np.ndarray = np.round(np.clip(frames, 0.0, 1.0) * 255.0).astype(np.uint8)
    return pixels


def write_mp4(frames: np.ndarray, path: Path, fps: int, crf: int = 18) -> VideoFile:
    """Encode uint8 RGB frames with libx264 (yuv420p, moov atom first) to `path`."""
    import av

    count, height, width, _ = frames.shape
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w", options={"movflags": "+faststart"}) as container:
        stream = container.add_stream("libx264", rate=Fraction(fps, 1))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": str(crf), "preset": "medium"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    data = path.read_bytes()
    return VideoFile(path, len(data), hashlib.sha256(data).hexdigest(), count, fps, width, height)


def write_poster(frame: np.ndarray, path: Path) -> Path:
    """The first frame as a JPEG (what the web page and the thumbnail variant show)."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(frame).save(path, format="JPEG", quality=90)
    return path
