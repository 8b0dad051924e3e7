"""Where verified audio is cached: a local directory (embedded mode) or S3 (scaled mode).

Keys are ``audio/<cid>`` for blobs and ``urlmap/<sha256 of URL>`` for small pointers.
Objects are immutable once written (content-addressed), so writers race harmlessly.
S3 objects are served by a presigned redirect; local files are served by the API itself.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

__all__ = ["BlobStore", "LocalBlobStore", "S3BlobStore", "open_blob_store"]

_CHUNK = 256 * 1024


class BlobStore(Protocol):
    """The small surface the audio route needs."""

    scratch: Path
    """A directory for downloads in progress (same filesystem as local objects)."""

    async def size(self, key: str) -> int | None:
        """The object's size, or ``None`` if absent."""
        ...

    async def put_file(self, key: str, path: Path, content_type: str) -> None:
        """Store the file at ``path`` under ``key`` (the file may be moved)."""
        ...

    def read(self, key: str, start: int, end: int) -> AsyncIterator[bytes]:
        """Bytes ``start``..``end`` inclusive."""
        ...

    async def get_small(self, key: str) -> bytes | None:
        """A small object's bytes, or ``None``."""
        ...

    async def put_small(self, key: str, data: bytes) -> None:
        """Store a small object."""
        ...

    def presign(self, key: str, *, content_type: str, cache_control: str) -> str | None:
        """A time-limited GET URL for browsers, or ``None`` when the API serves bytes itself."""
        ...


@dataclass
class LocalBlobStore:
    """Objects as files under ``root``."""

    root: Path

    def __post_init__(self) -> None:
        self.scratch = self.root / ".incoming"
        self.scratch.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        if ".." in key.split("/") or key.startswith("/"):
            raise ValueError(f"bad key {key!r}")
        return self.root / key

    async def size(self, key: str) -> int | None:
        try:
            return (await asyncio.to_thread(os.stat, self._path(key))).st_size
        except FileNotFoundError:
            return None

    async def put_file(self, key: str, path: Path, content_type: str) -> None:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(os.replace, path, target)

    async def read(self, key: str, start: int, end: int) -> AsyncIterator[bytes]:
        handle = await asyncio.to_thread(open, self._path(key), "rb")
        try:
            await asyncio.to_thread(handle.seek, start)
            left = end - start + 1
            while left > 0:
                chunk = await asyncio.to_thread(handle.read, min(_CHUNK, left))
                if not chunk:
                    break
                left -= len(chunk)
                yield chunk
        finally:
            handle.close()

    async def get_small(self, key: str) -> bytes | None:
        try:
            return await asyncio.to_thread(self._path(key).read_bytes)
        except FileNotFoundError:
            return None

    async def put_small(self, key: str, data: bytes) -> None:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.scratch)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            await asyncio.to_thread(os.replace, tmp, target)
        except BaseException:
            # A full disk leaves no scratch file behind (not in a thread: cancelled too).
            Path(tmp).unlink(missing_ok=True)  # noqa: ASYNC240 (one local unlink)
            raise

    def presign(self, key: str, *, content_type: str, cache_control: str) -> str | None:
        return None


class S3BlobStore:
    """Objects in an S3 bucket (boto3 calls run in threads); browsers get presigned URLs."""

    def __init__(
        self, bucket: str, scratch: Path, *, endpoint_url: str | None, presign_seconds: int
    ) -> None:
        import boto3  # imported lazily: only the scaled mode needs it

        self.bucket = bucket
        self.scratch = scratch
        self.scratch.mkdir(parents=True, exist_ok=True)
        self.presign_seconds = presign_seconds
        self.client: Any = boto3.client("s3", endpoint_url=endpoint_url)

    async def size(self, key: str) -> int | None:
        from botocore.exceptions import ClientError

        try:
            head = await asyncio.to_thread(self.client.head_object, Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        return int(head["ContentLength"])

    async def put_file(self, key: str, path: Path, content_type: str) -> None:
        try:
            await asyncio.to_thread(
                self.client.upload_file,
                str(path),
                self.bucket,
                key,
                ExtraArgs={"ContentType": content_type},
            )
        finally:
            # Uploaded or not, the scratch copy goes (not in a thread: cancelled too).
            path.unlink(missing_ok=True)  # noqa: ASYNC240 (one local unlink)

    async def read(self, key: str, start: int, end: int) -> AsyncIterator[bytes]:
        got = await asyncio.to_thread(
            self.client.get_object, Bucket=self.bucket, Key=key, Range=f"bytes={start}-{end}"
        )
        body = got["Body"]
        try:
            while chunk := await asyncio.to_thread(body.read, _CHUNK):
                yield chunk
        finally:
            body.close()

    async def get_small(self, key: str) -> bytes | None:
        from botocore.exceptions import ClientError

        try:
            got = await asyncio.to_thread(self.client.get_object, Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        data: bytes = await asyncio.to_thread(got["Body"].read)
        return data

    async def put_small(self, key: str, data: bytes) -> None:
        await asyncio.to_thread(self.client.put_object, Bucket=self.bucket, Key=key, Body=data)

    def presign(self, key: str, *, content_type: str, cache_control: str) -> str | None:
        url: str = self.client.generate_presigned_url(
            "get_object",
            Params={
                "Bucket": self.bucket,
                "Key": key,
                "ResponseContentType": content_type,
                "ResponseCacheControl": cache_control,
            },
            ExpiresIn=self.presign_seconds,
        )
        return url


def open_blob_store(
    *,
    blob_dir: Path,
    s3_bucket: str | None,
    s3_endpoint_url: str | None,
    presign_seconds: int = 3600,
) -> BlobStore:
    """S3 when a bucket is configured, else the local directory."""
    if s3_bucket:
        return S3BlobStore(
            s3_bucket,
            blob_dir / ".incoming",
            endpoint_url=s3_endpoint_url,
            presign_seconds=presign_seconds,
        )
    return LocalBlobStore(blob_dir)
