"""The artifact boundary: where MP4s, posters and uploaded input images live."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Protocol

__all__ = ["ArtifactStore"]


class ArtifactStore(Protocol):
    async def put_file(self, key: str, path: Path, content_type: str) -> int:
        """Store the file at `key` (overwriting: a re-run replaces its earlier output); bytes.

        Raises FileNotFoundError when `path` does not exist, and then stores nothing.
        """
        ...

    async def put_bytes(self, key: str, data: bytes, content_type: str) -> int: ...

    def open(self, key: str, *, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        """The bytes at `key` from `offset` (`length` of them, or to the end) in chunks.

        An async generator: raises NotFound on first iteration when `key` does not exist.
        """
        ...

    async def size(self, key: str) -> int:
        """Bytes stored at `key`; raises NotFound."""
        ...

    async def fetch_to(self, key: str, path: Path) -> None:
        """Copy `key` to a local file (for engines that read inputs from disk)."""
        ...

    async def url(self, key: str, expires_s: int) -> str | None:
        """A presigned download URL, or None when the store serves bytes only through the API."""
        ...

    async def exists(self, key: str) -> bool: ...

    async def delete_prefix(self, prefix: str) -> int:
        """Delete every key under `prefix`; how many were deleted."""
        ...
