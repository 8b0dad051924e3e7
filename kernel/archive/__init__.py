"""The archive of the log: Parquet segments, a manifest, and readers over them.

The archiver (:mod:`kernel.archive.writer`) copies each topic-partition of the log, in
offset order, into Parquet segments in a :mod:`~kernel.archive.store` (a local directory
in embedded mode, an S3 bucket in scaled mode). The :mod:`~kernel.archive.manifest` lists
which offsets each segment holds and is the only truth: a segment it does not list is an
orphan that the next run overwrites. :mod:`~kernel.archive.reader` reads a partition back
(alone, or archive first and then the live log), :mod:`~kernel.archive.trim` deletes
archived events from the PostgreSQL log, and :mod:`~kernel.archive.query` runs DuckDB SQL
over the segments.

Errors: :class:`~kernel.archive.store.StoreError` (the store could not be read or
written; retry), :class:`~kernel.archive.manifest.ManifestError` (the manifest is not one
we can read; stop), :class:`~kernel.archive.query.QueryError` (a user's SQL failed).
"""

from kernel.archive.manifest import Manifest, ManifestError, Segment
from kernel.archive.reader import ArchivedLog, ArchiveReader
from kernel.archive.store import LocalStore, S3Store, SegmentStore, StoreError, store_for
from kernel.archive.writer import archive_log

__all__ = [
    "ArchiveReader",
    "ArchivedLog",
    "LocalStore",
    "Manifest",
    "ManifestError",
    "S3Store",
    "Segment",
    "SegmentStore",
    "StoreError",
    "archive_log",
    "store_for",
]
