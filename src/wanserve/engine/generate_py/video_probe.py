"""Facts about an MP4 someone else wrote (an operator's generate.py), read back with PyAV.

`probe_video(path)` decodes the file (frame counts in container headers can be missing or
estimated, so frames are counted) and returns the same `VideoFile` the engine's own writer
returns; `poster_from_video(video, poster)` saves its first frame with the engine's poster writer.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from wanserve.engine.video import VideoFile, write_poster

__all__ = ["poster_from_video", "probe_video"]


def probe_video(path: Path) -> VideoFile:
    """What the MP4 at `path` holds; raises av.error.FFmpegError if it is not a video."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        rate = stream.average_rate or stream.base_rate or 0
        width, height = stream.codec_context.width, stream.codec_context.height
    return VideoFile(
        path=path,
        bytes=path.stat().st_size,
        sha256=_sha256(path),
        frames=frames,
        fps=round(float(rate)),
        width=width,
        height=height,
    )


def poster_from_video(video: Path, poster: Path) -> Path:
    """The first frame of `video` as a JPEG at `poster`."""
    import av

    with av.open(str(video)) as container:
        frame = next(container.decode(video=0))
        return write_poster(frame.to_ndarray(format="rgb24"), poster)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):  # streamed: a real 720p video is tens of MB
            digest.update(block)
    return digest.hexdigest()
