"""Facts about a finished MP4, read back with PyAV: what a `result` event reports, and a poster.

`describe_video(path)` decodes the file (frame counts in container headers can be missing or
estimated, so frames are counted) and returns the `ResultEvent` fields bytes, sha256, frames,
fps, duration, width and height. `write_poster(video, poster)` saves its first frame as a JPEG.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TypedDict

__all__ = ["VideoFacts", "describe_video", "sha256_of", "write_poster"]


class VideoFacts(TypedDict):
    bytes: int
    sha256: str
    frames: int
    fps: int
    duration: float
    width: int
    height: int


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def describe_video(path: Path) -> VideoFacts:
    """The result facts of the video at `path`; raises av.error.FFmpegError if it is not one."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        rate = stream.average_rate or stream.base_rate or 0
        width, height = stream.codec_context.width, stream.codec_context.height
    fps = round(float(rate))
    return VideoFacts(
        bytes=path.stat().st_size,
        sha256=sha256_of(path),
        frames=frames,
        fps=fps,
        duration=frames / fps if fps else 0.0,
        width=width,
        height=height,
    )


def write_poster(video: Path, poster: Path) -> None:
    """Save the first frame of `video` as a JPEG at `poster`."""
    import av

    with av.open(str(video)) as container:
        frame = next(container.decode(video=0))
        frame.to_image().save(  # type: ignore[no-untyped-call]
            poster, format="JPEG", quality=90
        )
