"""Where rank 0 puts a finished video: a local directory, or an `s3://bucket/prefix` location.

For an S3 output rank 0 encodes into a private temporary directory, then uploads
`<prefix>/video.mp4` and `<prefix>/poster.jpg`: the keys the dispatcher looks for when the
kubernetes backend points pods at its artifact store (`tasks/<task id>/...` under the store's
prefix). The client is the artifact store's own (`make_s3_client`); its settings come from the
environment a pod gets: `AWS_ENDPOINT_URL` and `AWS_DEFAULT_REGION` (rendered by the kubernetes
backend), credentials from boto3's usual chain (`AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`
from the artifacts Secret, or a workload identity).
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from wanserve.domain.errors import InvalidRequest

__all__ = ["OutputTarget", "S3Output", "parse_output", "upload"]

VIDEO_NAME = "video.mp4"
POSTER_NAME = "poster.jpg"


@dataclass(frozen=True)
class OutputTarget:
    """A local video path and its poster's."""

    video: Path
    poster: Path

    @classmethod
    def in_directory(cls, directory: Path) -> OutputTarget:
        return cls(directory / VIDEO_NAME, directory / POSTER_NAME)


@dataclass(frozen=True)
class S3Output:
    """`s3://bucket/prefix`: the video goes to `prefix/video.mp4`, the poster beside it."""

    bucket: str
    prefix: str  # no leading or trailing "/"; may be empty

    def key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def url(self, name: str) -> str:
        return f"s3://{self.bucket}/{self.key(name)}"


def parse_output(output: str | None) -> OutputTarget | S3Output:
    """The target `spec.output` names; InvalidRequest("output", ...) when it names none."""
    if not output:
        raise InvalidRequest("output", output, "must name the directory to write into")
    if not output.startswith("s3://"):
        return OutputTarget.in_directory(Path(output))
    parts = urlsplit(output)
    if not parts.netloc or parts.query or parts.fragment:
        raise InvalidRequest("output", output, "must be a directory or s3://bucket[/prefix]")
    if importlib.util.find_spec("boto3") is None:
        raise InvalidRequest("output", output, "s3:// outputs need boto3 (wanserve[s3])")
    return S3Output(parts.netloc, parts.path.strip("/"))


def upload(target: S3Output, video: Path, poster: Path) -> tuple[str, str]:
    """Upload both files (poster first, so a visible video always has its poster); their URLs."""
    client = _client_from_env()
    client.upload_file(
        str(poster), target.bucket, target.key(POSTER_NAME), ExtraArgs={"ContentType": "image/jpeg"}
    )
    client.upload_file(
        str(video), target.bucket, target.key(VIDEO_NAME), ExtraArgs={"ContentType": "video/mp4"}
    )
    return target.url(VIDEO_NAME), target.url(POSTER_NAME)


def _client_from_env() -> Any:
    from wanserve.artifacts.s3 import make_s3_client

    return make_s3_client(
        endpoint_url=os.environ.get("AWS_ENDPOINT_URL") or None,
        region=os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION") or "us-east-1",
        access_key_id=None,  # boto3's chain: env (the artifacts Secret), profile, workload role
        secret_access_key=None,
    )
