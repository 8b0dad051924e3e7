"""Where segments and the manifest live: a local directory or an S3 bucket.

Both stores have the same small synchronous surface (callers in async code run it in a
thread). Writes replace whole objects atomically (a rename locally, a single PUT on S3),
so a reader sees the old manifest or the new one, never half of one. DuckDB reads local
files; :meth:`SegmentStore.local_path` gives one, downloading from S3 into a cache first.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Protocol

from kernel.config import Settings

__all__ = ["LocalStore", "S3Store", "SegmentStore", "StoreError", "store_for"]


class StoreError(RuntimeError):
    """The store could not be read or written (disk or S3 trouble); retry later."""


class SegmentStore(Protocol):
    """Named objects (segment files, the manifest) in a directory or bucket."""

    def put_file(self, name: str, path: Path) -> None:
        """Store the file at ``path`` under ``name``, replacing any object of that name."""

    def put_bytes(self, name: str, data: bytes) -> None:
        """Store ``data`` under ``name``, replacing any object of that name."""

    def get_bytes(self, name: str) -> bytes | None:
        """The object called ``name``, or ``None`` if there is none."""

    def size(self, name: str) -> int | None:
        """The size in bytes of ``name``, or ``None`` if there is none."""

    def local_path(self, name: str) -> Path:
        """A local file holding ``name`` (for DuckDB); raises StoreError if it is missing."""


class LocalStore:
    """Objects as files under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, name: str) -> Path:
        return self.root / name

    def _replace_with(self, name: str, write: Any) -> None:
        target = self._path(name)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
            try:
                with os.fdopen(fd, "wb") as out:
                    write(out)
                os.replace(tmp, target)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise StoreError(f"cannot write {target}: {exc}") from exc

    def put_file(self, name: str, path: Path) -> None:
        def copy(out: Any) -> None:
            with path.open("rb") as src:
                shutil.copyfileobj(src, out)

        self._replace_with(name, copy)

    def put_bytes(self, name: str, data: bytes) -> None:
        self._replace_with(name, lambda out: out.write(data))

    def get_bytes(self, name: str) -> bytes | None:
        try:
            return self._path(name).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StoreError(f"cannot read {self._path(name)}: {exc}") from exc

    def size(self, name: str) -> int | None:
        try:
            return self._path(name).stat().st_size
        except FileNotFoundError:
            return None

    def local_path(self, name: str) -> Path:
        path = self._path(name)
        if not path.is_file():
            raise StoreError(f"segment {name} is missing from {self.root}")
        return path


class S3Store:
    """Objects in an S3 bucket under ``prefix``; reads are cached in ``cache_dir``.

    Segments never change once listed in the manifest (the same name is only rewritten
    with the same offsets), so a cached copy of the recorded size is current.
    """

    def __init__(
        self,
        bucket: str,
        cache_dir: Path,
        *,
        endpoint_url: str | None = None,
        prefix: str = "archive/",
        client: Any = None,
    ) -> None:
        if client is None:
            import boto3  # lazily: only the scaled mode needs it

            client = boto3.client("s3", endpoint_url=endpoint_url)
        self.client: Any = client
        self.bucket = bucket
        self.prefix = prefix
        self.cache = LocalStore(cache_dir)

    def _key(self, name: str) -> str:
        return self.prefix + name

    def put_file(self, name: str, path: Path) -> None:
        try:
            self.client.upload_file(str(path), self.bucket, self._key(name))
        except Exception as exc:  # boto3 raises botocore and S3Transfer errors alike
            raise StoreError(f"cannot upload {name} to s3://{self.bucket}: {exc}") from exc

    def put_bytes(self, name: str, data: bytes) -> None:
        try:
            self.client.put_object(Bucket=self.bucket, Key=self._key(name), Body=data)
        except Exception as exc:
            raise StoreError(f"cannot write {name} to s3://{self.bucket}: {exc}") from exc

    def get_bytes(self, name: str) -> bytes | None:
        try:
            answer = self.client.get_object(Bucket=self.bucket, Key=self._key(name))
            return bytes(answer["Body"].read())
        except Exception as exc:
            if _missing(exc):
                return None
            raise StoreError(f"cannot read {name} from s3://{self.bucket}: {exc}") from exc

    def size(self, name: str) -> int | None:
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self._key(name))
        except Exception as exc:
            if _missing(exc):
                return None
            raise StoreError(f"cannot stat {name} in s3://{self.bucket}: {exc}") from exc
        return int(head["ContentLength"])

    def local_path(self, name: str) -> Path:
        cached = self.cache.size(name)
        if cached is None or cached != self.size(name):
            data = self.get_bytes(name)
            if data is None:
                raise StoreError(f"segment {name} is missing from s3://{self.bucket}")
            self.cache.put_bytes(name, data)
        return self.cache.local_path(name)


def _missing(exc: Exception) -> bool:
    response = getattr(exc, "response", None)
    code = response.get("Error", {}).get("Code") if isinstance(response, dict) else None
    return code in ("404", "NoSuchKey", "NotFound")


def store_for(settings: Settings) -> SegmentStore:
    """The archive's store: S3 when ``PLYR_S3_BUCKET`` is set, else ``data_dir/archive``."""
    if settings.s3_bucket:
        return S3Store(
            settings.s3_bucket,
            settings.data_dir / "archive-cache",
            endpoint_url=settings.s3_endpoint_url,
        )
    return LocalStore(settings.data_dir / "archive")
