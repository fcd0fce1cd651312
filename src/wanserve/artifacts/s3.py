"""Artifacts in S3-compatible storage (AWS S3, SeaweedFS, MinIO, ...): the production store.

boto3 is synchronous, so every call runs in a worker thread. Keys live under an optional prefix
inside one bucket. `url` hands out presigned GET URLs that expire, so clients download straight
from the object store. Path-style addressing keeps custom endpoints (SeaweedFS, MinIO) working.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from wanserve.domain.errors import NotFound

__all__ = ["CHUNK_BYTES", "S3Artifacts", "make_s3_client"]

CHUNK_BYTES = 256 * 1024


def make_s3_client(
    *,
    endpoint_url: str | None,
    region: str,
    access_key_id: str | None,
    secret_access_key: str | None,
) -> Any:
    """A boto3 S3 client (imported here: boto3 is the `s3` extra)."""
    try:
        import boto3
        from botocore.config import Config
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ImportError("S3 artifacts need boto3: pip install 'wanserve[s3]'") from exc
    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=region,
        aws_access_key_id=access_key_id,
        aws_secret_access_key=secret_access_key,
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    )


class S3Artifacts:
    """ArtifactStore on one bucket (and optional key prefix) of an S3 API."""

    def __init__(self, client: Any, bucket: str, prefix: str = "") -> None:
        self._client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""

    def _key(self, key: str) -> str:
        return self.prefix + key

    async def put_file(self, key: str, path: Path, content_type: str) -> int:
        extra = {"ContentType": content_type}
        await asyncio.to_thread(
            self._client.upload_file, str(path), self.bucket, self._key(key), ExtraArgs=extra
        )
        return path.stat().st_size

    async def put_bytes(self, key: str, data: bytes, content_type: str) -> int:
        await asyncio.to_thread(
            self._client.put_object,
            Bucket=self.bucket,
            Key=self._key(key),
            Body=data,
            ContentType=content_type,
        )
        return len(data)

    async def open(
        self, key: str, *, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": self._key(key)}
        if offset or length is not None:
            end = "" if length is None else str(offset + length - 1)
            params["Range"] = f"bytes={offset}-{end}"
        response = await self._call(key, self._client.get_object, **params)
        body = response["Body"]
        try:
            while chunk := await asyncio.to_thread(body.read, CHUNK_BYTES):
                yield chunk
        finally:
            body.close()

    async def size(self, key: str) -> int:
        head = await self._call(
            key, self._client.head_object, Bucket=self.bucket, Key=self._key(key)
        )
        return int(head["ContentLength"])

    async def fetch_to(self, key: str, path: Path) -> None:
        await self.size(key)  # NotFound before touching the target
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        os.close(fd)
        try:
            await asyncio.to_thread(self._client.download_file, self.bucket, self._key(key), tmp)
            os.replace(tmp, path)
        finally:
            Path(tmp).unlink(missing_ok=True)

    async def url(self, key: str, expires_s: int) -> str | None:
        params = {"Bucket": self.bucket, "Key": self._key(key)}
        url: str = await asyncio.to_thread(
            self._client.generate_presigned_url, "get_object", Params=params, ExpiresIn=expires_s
        )
        return url

    async def exists(self, key: str) -> bool:
        try:
            await self.size(key)
        except NotFound:
            return False
        return True

    async def delete_prefix(self, prefix: str) -> int:
        return await asyncio.to_thread(self._delete_prefix, self._key(prefix))

    def _delete_prefix(self, prefix: str) -> int:
        deleted = 0
        paginator = self._client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            objects = [{"Key": item["Key"]} for item in page.get("Contents", [])]
            if objects:
                self._client.delete_objects(Bucket=self.bucket, Delete={"Objects": objects})
                deleted += len(objects)
        return deleted

    async def _call(self, key: str, method: Any, **params: Any) -> Any:
        from botocore.exceptions import ClientError

        try:
            return await asyncio.to_thread(method, **params)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("404", "NoSuchKey", "NotFound"):
                raise NotFound(
                    f"no artifact {key!r}",
                    errors=[{"field": "key", "value": key, "rule": "must exist"}],
                ) from None
            raise
