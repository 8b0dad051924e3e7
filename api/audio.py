"""Audio bytes: content types, byte ranges, CID verification and the fetch-once cache.

Pure helpers (:func:`content_type`, :func:`parse_range`, :func:`blob_digest`,
:func:`raw_cid`) plus :class:`AudioCache`, which gets a track's audio into the blob store
exactly once per process: an ``audioBlob`` from the artist's PDS (``getBlob``), verified
against its CID while streaming; an ``audioUrl`` only from configured origins, cached
under the CID of the bytes we received. Errors: :class:`AudioUnavailable`, and its
:class:`CacheFull` when the store has no room (the scratch file is removed on every failure,
so nothing partial is kept). Room is made by the store's eviction: before a download whose
size is known (the record's blob size, else ``Content-Length``), so a track that cannot
fit is refused before its body is read (its scratch file is then allocated at that size,
so concurrent downloads count in the free space), and once more when a write hits
ENOSPC/EDQUOT (the write is retried once).
"""

from __future__ import annotations

import asyncio
import base64
import errno
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlencode

from api.blobstore import BlobStore
from kernel.fetch import UpstreamError, UpstreamFetcher, UpstreamRefused
from kernel.identity import ResolveError, resolve_did

__all__ = [
    "AUDIO_TYPES",
    "AudioCache",
    "AudioUnavailable",
    "CacheFull",
    "CachedAudio",
    "RangeNotSatisfiable",
    "blob_digest",
    "content_type",
    "parse_range",
    "raw_cid",
]

logger = logging.getLogger(__name__)

AUDIO_TYPES: Mapping[str, str] = {
    "mp3": "audio/mpeg",
    "m4a": "audio/mp4",
    "mp4": "audio/mp4",
    "aac": "audio/aac",
    "flac": "audio/flac",
    "ogg": "audio/ogg",
    "oga": "audio/ogg",
    "opus": "audio/ogg; codecs=opus",
    "wav": "audio/wav",
    "aiff": "audio/aiff",
    "aif": "audio/aiff",
    "webm": "audio/webm",
}
"""Set explicitly: :mod:`mimetypes` lacks some (flac, opus, m4a vary by platform)."""


class AudioUnavailable(RuntimeError):
    """The audio could not be obtained (refused, upstream failure, CID mismatch)."""


class CacheFull(AudioUnavailable):
    """The blob store has no room (or no inodes) for the audio; retry once space is freed."""


T = TypeVar("T")

_NO_ROOM = frozenset({errno.ENOSPC, errno.EDQUOT})
_ROOM_TO_RETRY = 256 * 1024
"""Room asked of the store when a write of unknown remaining size runs out of it."""


def _allocate(fd: int, size: int) -> None:
    """``posix_fallocate``, where the filesystem supports it (else nothing is reserved)."""
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
            raise


def _append(fd: int, data: bytes, offset: int) -> None:
    """Write ``data`` so the file ends at ``offset + len(data)``: called again after a
    failed (possibly partial) write, it resumes where the file ends."""
    view = memoryview(data)
    done = os.lseek(fd, 0, os.SEEK_CUR) - offset
    while done < len(view):
        done += os.write(fd, view[done:])


class RangeNotSatisfiable(ValueError):
    """A syntactically valid range that lies outside the object."""


def content_type(file_type: str | None, blob_mime: str | None = None) -> str:
    """The Content-Type for a track: by its ``fileType``, else a plausible blob mime type."""
    if file_type and file_type.lower().lstrip(".") in AUDIO_TYPES:
        return AUDIO_TYPES[file_type.lower().lstrip(".")]
    if blob_mime and blob_mime.startswith("audio/"):
        return blob_mime
    return "application/octet-stream"


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The inclusive (start, end) of a single ``bytes=`` range, or ``None`` for "whole body".

    Malformed headers and multi-range requests are ignored (whole body, as RFC 9110 allows);
    a range that starts past the end, or an empty suffix, raises :class:`RangeNotSatisfiable`.
    """
    if not header:
        return None
    unit, _, spec = header.strip().partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    if not dash:
        return None
    first, last = first.strip(), last.strip()
    if not (first.isdigit() or first == "") or not (last.isdigit() or last == ""):
        return None
    if first == "":
        if last == "":
            return None
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise RangeNotSatisfiable(header)
        return max(0, size - suffix), size - 1
    start = int(first)
    if start >= size:
        raise RangeNotSatisfiable(header)
    end = int(last) if last else size - 1
    if end < start:
        return None
    return start, min(end, size - 1)


def blob_digest(cid: str) -> bytes:
    """The sha2-256 digest inside a CIDv1 (base32, raw or dag-cbor codec); ValueError if not."""
    if not cid.startswith("b"):
        raise ValueError("not a base32 CIDv1")
    text = cid[1:].upper()
    raw = base64.b32decode(text + "=" * (-len(text) % 8))
    pos = 0
    values = []
    for _ in range(4):  # version, codec, hash function, digest length
        value, shift = 0, 0
        while True:
            byte = raw[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        values.append(value)
    version, _codec, hash_code, length = values
    if version != 1 or hash_code != 0x12 or length != 32 or len(raw) - pos != 32:
        raise ValueError("not a sha2-256 CIDv1")
    return raw[pos:]


def raw_cid(digest: bytes) -> str:
    """The CIDv1 (raw codec, sha2-256, base32) of bytes with this digest."""
    raw = bytes([0x01, 0x55, 0x12, 0x20]) + digest
    return "b" + base64.b32encode(raw).decode().lower().rstrip("=")


@dataclass(frozen=True)
class CachedAudio:
    """Audio present in the blob store."""

    key: str
    etag: str
    """The CID of the bytes (the blob's own CID for ``audioBlob``)."""
    size: int


@dataclass
class AudioCache:
    """Gets audio into the store once; concurrent requests for one key share a lock."""

    store: BlobStore
    fetcher: UpstreamFetcher
    plc_url: str
    audio_origins: tuple[str, ...] = ()
    _locks: dict[str, asyncio.Lock] = field(default_factory=dict)

    def _lock(self, key: str) -> asyncio.Lock:
        if len(self._locks) > 4096:  # bounded: drop idle locks
            for k in [k for k, v in self._locks.items() if not v.locked()]:
                del self._locks[k]
        return self._locks.setdefault(key, asyncio.Lock())

    async def blob(self, track: Mapping[str, Any], pds_url: str | None) -> CachedAudio:
        """The track's ``audioBlob``, fetched from its PDS and verified if not cached yet."""
        cid = str(track["audio_blob_cid"])
        try:
            digest = blob_digest(cid)
        except (ValueError, IndexError):
            raise AudioUnavailable(f"unusable blob CID {cid!r}") from None
        key = f"audio/{cid}"
        async with self._lock(key):
            size = await self.store.size(key)
            if size is not None:
                return CachedAudio(key, cid, size)
            declared = track.get("audio_size")
            expected = declared if isinstance(declared, int) and declared > 0 else None
            if expected is not None and not await self.store.make_room(expected):
                logger.error("blob cache full", extra={"key": key, "size": expected})
                raise CacheFull("the audio cannot fit in the cache")
            pds = pds_url or await self._pds_of(str(track["did"]))
            url = f"{pds}/xrpc/com.atproto.sync.getBlob?" + urlencode(
                {"did": track["did"], "cid": cid}
            )
            path, got, size = await self._download(
                url, allow_trusted=True, origins=None, expected=expected
            )
            if got != digest:
                await asyncio.to_thread(path.unlink, missing_ok=True)
                logger.warning("blob CID mismatch", extra={"did": track["did"], "cid": cid})
                raise AudioUnavailable("blob does not match its CID")
            await self._put(key, path, content_type(track.get("file_type")))
            logger.info("blob cached", extra={"did": track["did"], "cid": cid, "size": size})
            return CachedAudio(key, cid, size)

    async def url(self, track: Mapping[str, Any]) -> CachedAudio:
        """The track's ``audioUrl``, fetched only from a configured origin, cached by content."""
        url = str(track["audio_url"])
        pointer = "urlmap/" + hashlib.sha256(url.encode()).hexdigest()
        async with self._lock(pointer):
            known = await self.store.get_small(pointer)
            if known is not None:
                cached = json.loads(known)
                # The audio itself may have been evicted since: then fetch it again (the
                # check is also the use that keeps it from being evicted soon).
                if not self.store.evicts or await self.store.size(cached["key"]) is not None:
                    return CachedAudio(cached["key"], cached["etag"], int(cached["size"]))
            if not self.audio_origins:
                raise AudioUnavailable("no audio origins are configured")
            path, digest, size = await self._download(
                url, allow_trusted=False, origins=self.audio_origins
            )
            cid = raw_cid(digest)
            key = f"audio/{cid}"
            if await self.store.size(key) is None:
                await self._put(key, path, content_type(track.get("file_type")))
            else:
                await asyncio.to_thread(path.unlink, missing_ok=True)
            cached = {"key": key, "etag": cid, "size": size}
            try:
                await self.store.put_small(pointer, json.dumps(cached).encode())
            except OSError as exc:
                if exc.errno not in _NO_ROOM:
                    raise
                # The audio is stored; only the shortcut to it is missing (next time the
                # URL is fetched again), so serve it rather than fail the request.
                logger.error("blob cache full", extra={"key": pointer, "error": str(exc)})
            return CachedAudio(key, cid, size)

    async def _with_room(self, action: Callable[[], Awaitable[T]], room: int) -> T:
        """``action()``; when it runs out of room, make ``room`` bytes (evicting) and run it
        once more. Other errors, or no room to be made, raise as they came."""
        try:
            return await action()
        except OSError as exc:
            if exc.errno not in _NO_ROOM or not await self.store.make_room(room):
                raise
        return await action()

    async def _put(self, key: str, path: Path, mime: str) -> None:
        """``store.put_file`` (retried once after eviction when out of room); the scratch
        file never outlives a failure."""
        try:
            await self._with_room(partial(self.store.put_file, key, path, mime), _ROOM_TO_RETRY)
        except BaseException as exc:
            # Not in a thread: this must run when the request is cancelled too.
            path.unlink(missing_ok=True)  # noqa: ASYNC240 (one local unlink)
            if isinstance(exc, OSError) and exc.errno in _NO_ROOM:
                logger.error("blob cache full", extra={"key": key, "error": str(exc)})
                raise CacheFull("the audio cache is full") from None
            raise

    async def _scratch_file(self) -> tuple[int, Path]:
        """A new scratch file (ENOSPC too when no inode is left: evict, retry once)."""

        async def create() -> tuple[int, str]:
            return tempfile.mkstemp(dir=self.store.scratch)

        fd, name = await self._with_room(create, _ROOM_TO_RETRY)
        return fd, Path(name)

    async def _reserve(self, fd: int, size: int) -> None:
        """Allocate ``size`` bytes for a download before reading it: concurrent downloads
        (of every worker) then see each other in the disk's free space, and a disk without
        room says so before the body is read (evict, retry once)."""
        await self._with_room(partial(asyncio.to_thread, _allocate, fd, size), size)

    async def _download(
        self,
        url: str,
        *,
        allow_trusted: bool,
        origins: tuple[str, ...] | None,
        expected: int | None = None,
    ) -> tuple[Path, bytes, int]:
        """Stream ``url`` into a scratch file: (its path, sha256, size).

        ``expected`` (the record's size, if any) already has room; a different
        ``Content-Length`` is checked before the body is read.
        """
        hasher = hashlib.sha256()
        size = 0
        path: Path | None = None
        try:
            fd, path = await self._scratch_file()
            with os.fdopen(fd, "wb", buffering=0) as out:
                async with self.fetcher.get(
                    url, allow_trusted=allow_trusted, origins=origins
                ) as response:
                    length = response.headers.get("content-length", "")
                    declared = int(length) if length.isdigit() else expected
                    if declared is not None and declared != expected:
                        if not await self.store.make_room(declared):
                            raise CacheFull("the audio cannot fit in the cache")
                    if declared is not None:
                        await self._reserve(out.fileno(), declared)
                    retried = False
                    async for chunk in response.chunks:
                        hasher.update(chunk)
                        try:
                            await asyncio.to_thread(_append, out.fileno(), chunk, size)
                        except OSError as exc:
                            # Out of room mid-download: evict for the rest, retry once.
                            rest = (
                                max(declared - size, len(chunk))
                                if declared
                                else max(size, _ROOM_TO_RETRY)
                            )
                            if (
                                exc.errno not in _NO_ROOM
                                or retried
                                or not await self.store.make_room(rest)
                            ):
                                raise
                            retried = True
                            await asyncio.to_thread(_append, out.fileno(), chunk, size)
                        size += len(chunk)
                    if declared is not None:
                        await asyncio.to_thread(os.ftruncate, out.fileno(), size)  # reserved
        except BaseException as exc:
            if path is not None:
                path.unlink(missing_ok=True)  # as in _put: not in a thread
            if isinstance(exc, UpstreamRefused):
                logger.warning("upstream refused", extra={"reason": str(exc)})
                raise AudioUnavailable(str(exc)) from None
            if isinstance(exc, CacheFull):
                logger.error("blob cache full", extra={"url": url, "error": str(exc)})
                raise
            if isinstance(exc, OSError) and exc.errno in _NO_ROOM:
                # Our disk, not the upstream: no network error carries ENOSPC/EDQUOT.
                logger.error("blob cache full", extra={"url": url, "error": str(exc)})
                raise CacheFull("the audio cache is full") from None
            if isinstance(exc, (UpstreamError, TimeoutError, OSError)):
                raise AudioUnavailable(f"upstream failed: {exc}") from None
            raise
        return path, hasher.digest(), size

    async def _pds_of(self, did: str) -> str:
        """The PDS endpoint from the DID document (fetched through the SSRF guard)."""
        try:
            doc = await resolve_did(self.fetcher, self.plc_url, did)
        except ResolveError as exc:
            raise AudioUnavailable(f"cannot resolve {did}: {exc}") from None
        if not doc.pds_url:
            raise AudioUnavailable(f"{did} has no PDS")
        return doc.pds_url
