"""Artifact storage: a local directory (embedded) or S3-compatible storage (production).

`make_artifacts(settings)` picks one from `settings.artifacts.url`: unset or a path or
`file://` URL is a directory (default `<data_dir>/artifacts`); `s3://bucket/prefix` is S3 with
the configured endpoint and credentials.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from wanserve.artifacts.base import ArtifactStore
from wanserve.domain.errors import InvalidRequest

if TYPE_CHECKING:
    from wanserve.settings import Settings

__all__ = ["ArtifactStore", "make_artifacts"]


def make_artifacts(settings: Settings) -> ArtifactStore:
    """The artifact store `settings.artifacts.url` names; raises InvalidRequest on other schemes."""
    url = settings.artifacts.url
    if not url:
        return _local(settings.data_dir / "artifacts")
    parsed = urlparse(url)
    if parsed.scheme in ("", "file"):
        return _local(Path(parsed.path if parsed.scheme else url))
    if parsed.scheme == "s3" and parsed.netloc:
        return _s3(settings, parsed.netloc, parsed.path)
    raise InvalidRequest(
        "artifacts.url", url, "must be a directory, file:///path or s3://bucket[/prefix]"
    )


def _local(root: Path) -> ArtifactStore:
    from wanserve.artifacts.local import LocalArtifacts

    root.mkdir(parents=True, exist_ok=True)
    return LocalArtifacts(root)


def _s3(settings: Settings, bucket: str, prefix: str) -> ArtifactStore:
    from wanserve.artifacts.s3 import S3Artifacts, make_s3_client

    group = settings.artifacts
    client = make_s3_client(
        endpoint_url=group.s3_endpoint_url,
        region=group.s3_region,
        access_key_id=_plain(group.s3_access_key_id),
        secret_access_key=_plain(group.s3_secret_access_key),
    )
    return S3Artifacts(client, bucket, prefix)


def _plain(secret: object) -> str | None:
    value = getattr(secret, "get_secret_value", None)
    return value() if value is not None else None
