"""Artifacts in a local directory: the embedded default.

Keys are relative paths under the root (`tasks/<id>/video.mp4`); a key that would leave the root
is refused. Writes go to a temporary file beside the target and are renamed into place, so a
reader never sees half a file and a re-run replaces its earlier output atomically.
"""

from __future__ import annotations

import asyncio
import os
import posixpath
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

from wanserve.domain.errors import InvalidRequest, NotFound

__all__ = ["CHUNK_BYTES", "LocalArtifacts"]

CHUNK_BYTES = 256 * 1024


class LocalArtifacts:
    """ArtifactStore over a directory; file I/O runs in threads to keep the loop free."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def path(self, key: str) -> Path:
        """The file of `key`; raises InvalidRequest for keys outside the root.

        The check is lexical (no file system call, so it is safe on the event loop): the root
        holds only what this class writes, never a link.
        """
        relative = posixpath.normpath(key) if key else ""
        if relative in ("", ".", "..") or relative.startswith(("/", "../")):
            raise InvalidRequest("key", key, "must be a relative path inside the artifact root")
        return self.root / relative

    async def put_file(self, key: str, path: Path, content_type: str) -> int:  # noqa: ARG002
        target = self.path(key)
        return await asyncio.to_thread(_atomic_copy, path, target)

    async def put_bytes(self, key: str, data: bytes, content_type: str) -> int:  # noqa: ARG002
        target = self.path(key)
        return await asyncio.to_thread(_atomic_write, target, data)

    async def open(
        self, key: str, *, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        path = self._existing(key)
        handle = await asyncio.to_thread(path.open, "rb")
        try:
            await asyncio.to_thread(handle.seek, offset)
            remaining = length
            while remaining is None or remaining > 0:
                size = CHUNK_BYTES if remaining is None else min(CHUNK_BYTES, remaining)
                chunk = await asyncio.to_thread(handle.read, size)
                if not chunk:
                    return
                if remaining is not None:
                    remaining -= len(chunk)
                yield chunk
        finally:
            handle.close()

    async def size(self, key: str) -> int:
        path = self._existing(key)
        return (await asyncio.to_thread(path.stat)).st_size

    async def fetch_to(self, key: str, path: Path) -> None:
        await asyncio.to_thread(_atomic_copy, self._existing(key), path)

    async def url(self, key: str, expires_s: int) -> str | None:  # noqa: ARG002
        return None  # served through the API, which checks ownership

    async def exists(self, key: str) -> bool:
        return await asyncio.to_thread(self.path(key).is_file)

    async def delete_prefix(self, prefix: str) -> int:
        return await asyncio.to_thread(self._delete_prefix, prefix)

    def _delete_prefix(self, prefix: str) -> int:
        base = self.path(prefix.rstrip("/")) if prefix.strip("/") else self.root
        if base.is_file():
            base.unlink()
            return 1
        if not base.is_dir():
            return 0
        count = sum(1 for p in base.rglob("*") if p.is_file())
        if base == self.root:
            for child in base.iterdir():
                shutil.rmtree(child) if child.is_dir() else child.unlink()
        else:
            shutil.rmtree(base)
        return count

    def _existing(self, key: str) -> Path:
        path = self.path(key)
        if not path.is_file():
            raise NotFound(
                f"no artifact {key!r}",
                errors=[{"field": "key", "value": key, "rule": "must exist"}],
            )
        return path


def _atomic_write(target: Path, data: bytes) -> int:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return len(data)


def _atomic_copy(source: Path, target: Path) -> int:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    os.close(fd)
    try:
        shutil.copyfile(source, tmp)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target.stat().st_size
