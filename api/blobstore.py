"""Where verified audio is cached: a local directory (embedded mode) or S3 (scaled mode).

Keys are ``audio/<cid>`` for blobs and ``urlmap/<sha256 of URL>`` for small pointers.
Objects are immutable once written (content-addressed), so writers race harmlessly.
S3 objects are served by a presigned redirect; local files are served by the API itself.

The local directory is bounded: ``audio/`` objects past ``max_bytes`` are evicted, least
recently used first (a file's mtime is its last use, refreshed at most every
:data:`TOUCH_S`). Several worker processes share one directory: room is made and stored
bytes are counted under an ``flock`` on it, in a count file all of them keep; eviction
lists ``audio/`` (and resets the count), and so does each process's first write (a
process killed between a write and its count leaves the count short). Deleting a file
another process is streaming is harmless (its open descriptor keeps the bytes); files in
the scratch directory are only removed once idle for :data:`SCRATCH_STALE_S`.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO, Protocol

__all__ = [
    "SCRATCH_STALE_S",
    "TOUCH_S",
    "BlobStore",
    "LocalBlobStore",
    "S3BlobStore",
    "open_blob_store",
    "remove_stale_scratch",
]

logger = logging.getLogger(__name__)

_CHUNK = 256 * 1024

TOUCH_S = 300
"""A cached object's mtime (its last use, for eviction) is refreshed at most this often."""
_USAGE = ".audio-bytes"
"""The count of ``audio/`` bytes shared by the processes (updated under the lock)."""
SCRATCH_STALE_S = 2 * 3600
"""A scratch file idle (no write) this long belongs to no live download: every download
runs inside the fetch timeout (``PLYR_UPSTREAM_TIMEOUT``, at most 3600 s) and each chunk
written refreshes the mtime; the margin covers the S3 upload that follows a download."""


class BlobStore(Protocol):
    """The small surface the audio route needs."""

    scratch: Path
    """A directory for downloads in progress (same filesystem as local objects)."""
    evicts: bool
    """Whether objects may disappear (evicted): a pointer's target must then be checked."""

    async def size(self, key: str) -> int | None:
        """The object's size, or ``None`` if absent."""
        ...

    async def put_file(self, key: str, path: Path, content_type: str) -> None:
        """Store the file at ``path`` under ``key`` (the file may be moved)."""
        ...

    async def read(self, key: str, start: int, end: int) -> AsyncIterator[bytes]:
        """Bytes ``start``..``end`` inclusive: the object is opened now (``FileNotFoundError``
        if it was evicted), its bytes stream as the iterator is read."""
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

    async def make_room(self, size: int) -> bool:
        """Make room (evicting if need be) for ``size`` more bytes on the scratch disk and
        in the store; ``False``, evicting nothing, if they cannot fit even so."""
        ...


def remove_stale_scratch(scratch: Path, now: float, max_age: float = SCRATCH_STALE_S) -> int:
    """Delete files in ``scratch`` idle for ``max_age`` seconds (left by a killed process);
    how many were deleted."""
    removed = 0
    try:
        entries = list(os.scandir(scratch))
    except FileNotFoundError:
        return 0
    for entry in entries:
        try:
            if entry.is_file(follow_symlinks=False) and entry.stat().st_mtime < now - max_age:
                os.unlink(entry.path)
                removed += 1
        except FileNotFoundError:
            pass  # finished or removed by another process meanwhile
    if removed:
        logger.warning("stale scratch files removed", extra={"count": removed})
    return removed


def _free_bytes(path: Path) -> tuple[int, int]:
    """Bytes and inodes an unprivileged writer may still use on ``path``'s filesystem."""
    st = os.statvfs(path)
    # Filesystems that allocate inodes on demand (btrfs) report none at all.
    return st.f_bavail * st.f_frsize, st.f_favail if st.f_files else sys.maxsize


@dataclass
class LocalBlobStore:
    """Objects as files under ``root``; ``audio/`` holds at most ``max_bytes`` (see module)."""

    root: Path
    max_bytes: int | None = None
    """``None``: half the size of the filesystem holding ``root``."""
    evicts = True

    def __post_init__(self) -> None:
        self.scratch = self.root / ".incoming"
        self.scratch.mkdir(parents=True, exist_ok=True)
        if self.max_bytes is None:
            st = os.statvfs(self.root)
            self.max_bytes = st.f_blocks * st.f_frsize // 2
        self.cap: int = self.max_bytes
        self._listed = False
        """Whether this process has counted ``audio/`` itself (it does before trusting
        the shared count, which a process killed mid-write may have left short)."""
        remove_stale_scratch(self.scratch, time.time())

    async def make_room(self, size: int) -> bool:
        return await asyncio.to_thread(self._locked, partial(self._make_room, size))

    async def _added(self, path: Path) -> None:
        """Count the object just stored at ``path``; evict others if it crossed the cap."""
        await asyncio.to_thread(self._locked, partial(self._count_added, path))

    def _locked(self, action: Callable[[], bool]) -> bool:
        """``action()`` under an exclusive ``flock`` on ``root`` (shared by processes;
        released on close, or when the process dies)."""
        fd = os.open(self.root, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            return action()
        finally:
            os.close(fd)

    def _make_room(self, size: int) -> bool:
        used = self._read_usage()
        if used is not None and used + size <= self.cap:
            free, inodes = _free_bytes(self.root)
            if free >= size and inodes > 1:
                return True
        return self._evict(size, on_disk=False)

    def _count_added(self, path: Path) -> bool:
        try:
            size = os.stat(path).st_size
        except FileNotFoundError:
            return True  # already evicted by another process: nothing to count
        used = self._read_usage()
        if used is not None and used + size <= self.cap:
            self._write_usage(used + size)
            return True
        return self._evict(0, on_disk=True, keep=str(path))

    def _read_usage(self) -> int | None:
        """The shared count of ``audio/`` bytes; ``None`` if absent or not trusted yet."""
        if not self._listed:
            return None
        try:
            text = (self.root / _USAGE).read_bytes()
        except FileNotFoundError:
            return None
        return int(text) if text.strip().isdigit() else None

    def _write_usage(self, total: int) -> None:
        try:
            fd = os.open(self.root / _USAGE, os.O_WRONLY | os.O_CREAT, 0o644)
        except OSError as exc:  # no inode left: the next writer lists ``audio/`` again
            logger.warning("blob cache count not kept", extra={"error": str(exc)})
            return
        try:
            os.pwrite(fd, b"%20d\n" % total, 0)  # fixed width: never a stale tail
        finally:
            os.close(fd)

    def _audio_listing(self) -> list[tuple[int, int, int, str]]:
        """``audio/`` objects, least recently used first: (mtime ns, size, allocated, path)."""
        objects = []
        try:
            entries = list(os.scandir(self.root / "audio"))
        except FileNotFoundError:
            entries = []
        for entry in entries:
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            objects.append((st.st_mtime_ns, st.st_size, st.st_blocks * 512, entry.path))
        objects.sort()
        return objects

    def _evict(self, size: int, *, on_disk: bool, keep: str | None = None) -> bool:
        """List ``audio/`` and evict LRU objects but ``keep`` until ``size`` more bytes fit
        (down to 90% of the cap, so listings stay rare); also drop stale scratch files.
        Holding the lock. ``on_disk``: the bytes are already written, only the cap applies."""
        remove_stale_scratch(self.scratch, time.time())
        objects = self._audio_listing()
        total = sum(obj_size for _, obj_size, _, _ in objects)
        free, inodes = _free_bytes(self.root)
        need_free = 0 if on_disk else size
        self._listed = True
        if size > self.cap or need_free > free + sum(alloc for _, _, alloc, _ in objects):
            self._write_usage(total)
            return False  # would not fit with the cache empty: evict nothing
        low_water = self.cap - self.cap // 10
        evicted = 0
        for mtime_ns, obj_size, alloc, path in objects:
            if total + size <= low_water and free >= need_free and inodes > 1:
                break
            if path == keep:
                continue
            try:
                if os.stat(path).st_mtime_ns != mtime_ns:
                    continue  # used since it was listed
                os.unlink(path)
            except FileNotFoundError:
                pass  # deleted by hand meanwhile
            total -= obj_size
            free += alloc
            inodes += 1
            evicted += 1
        if evicted:
            logger.info(
                "blob cache evicted", extra={"count": evicted, "size": total, "max_bytes": self.cap}
            )
        self._write_usage(total)
        return total + size <= self.cap and free >= need_free and inodes > 0

    def _path(self, key: str) -> Path:
        if ".." in key.split("/") or key.startswith("/"):
            raise ValueError(f"bad key {key!r}")
        return self.root / key

    async def size(self, key: str) -> int | None:
        """The object's size; a use, so an object not used for :data:`TOUCH_S` is touched."""
        try:
            return await asyncio.to_thread(self._size_touched, self._path(key))
        except FileNotFoundError:
            return None

    @staticmethod
    def _size_touched(path: Path) -> int:
        st = os.stat(path)
        if st.st_mtime < time.time() - TOUCH_S:
            os.utime(path)
        return st.st_size

    async def put_file(self, key: str, path: Path, content_type: str) -> None:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(os.replace, path, target)
        if key.startswith("audio/"):
            await self._added(target)

    async def read(self, key: str, start: int, end: int) -> AsyncIterator[bytes]:
        handle = await asyncio.to_thread(open, self._path(key), "rb")
        return self._chunks(handle, start, end)

    @staticmethod
    async def _chunks(handle: BinaryIO, start: int, end: int) -> AsyncIterator[bytes]:
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

    evicts = False

    def __init__(
        self, bucket: str, scratch: Path, *, endpoint_url: str | None, presign_seconds: int
    ) -> None:
        import boto3  # imported lazily: only the scaled mode needs it

        self.bucket = bucket
        self.scratch = scratch
        self.scratch.mkdir(parents=True, exist_ok=True)
        remove_stale_scratch(self.scratch, time.time())
        self.presign_seconds = presign_seconds
        self.client: Any = boto3.client("s3", endpoint_url=endpoint_url)

    async def make_room(self, size: int) -> bool:
        """Only the scratch disk is ours to check: the bucket has no cap here."""
        return (await asyncio.to_thread(_free_bytes, self.scratch))[0] >= size

    async def _unless_missing(self, method: Any, key: str) -> Any:
        """``method`` of the client on ``key`` (in a thread); ``None`` if there is no such key."""
        from botocore.exceptions import ClientError

        try:
            return await asyncio.to_thread(method, Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise

    async def size(self, key: str) -> int | None:
        head = await self._unless_missing(self.client.head_object, key)
        return None if head is None else int(head["ContentLength"])

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
        return self._chunks(got["Body"])

    @staticmethod
    async def _chunks(body: Any) -> AsyncIterator[bytes]:
        try:
            while chunk := await asyncio.to_thread(body.read, _CHUNK):
                yield chunk
        finally:
            body.close()

    async def get_small(self, key: str) -> bytes | None:
        got = await self._unless_missing(self.client.get_object, key)
        if got is None:
            return None
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
    max_bytes: int | None = None,
) -> BlobStore:
    """S3 when a bucket is configured, else the local directory holding ``max_bytes``."""
    if s3_bucket:
        return S3BlobStore(
            s3_bucket,
            blob_dir / ".incoming",
            endpoint_url=s3_endpoint_url,
            presign_seconds=presign_seconds,
        )
    return LocalBlobStore(blob_dir, max_bytes)
