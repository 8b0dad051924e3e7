"""What the catalog read models of record collections share: rows, revs and tombstones.

Every record read model (track, like, comment, list) keeps one row per AT-URI and follows
the same rule: the event with the highest commit ``rev`` wins, and a delete beats a
write of the same rev. Deletes leave a tombstone (``catalog_tombstone``), so a replayed or
late create with an older rev cannot bring a deleted record back; a deleted account leaves
a tombstone keyed by its DID (rev ``''``) that hides every later event of that repo.
Because the outcome only depends on the set of events, not their order, a rebuild gives
the same rows as the live run. Revs compare in byte order (:func:`kernel.revs.rev_sql`),
as Python compares the reduction's revs.

Each record collection is one module with the surface :class:`RecordModule` (as the
indexing plugins of Bluesky's appview): its collection and table, the pure ``to_row`` and
``touches``, and ``insert``/``delete``/``delete_by_did``, each saying what it touched
(:class:`Touched`: the subjects whose aggregates to recount, the artists whose albums to
re-derive); the catalog iterates its registry of modules.

Rows travel to PostgreSQL as one JSON array per statement (``jsonb_to_recordset``), so a
batch of any size costs one round trip per table; :class:`Rows` is such an array, encoded
where the rows are built.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson
from psycopg import AsyncConnection

from kernel.envelope import Envelope
from kernel.revs import rev_sql
from lexicons import ValidationError
from lexicons.compiled import record_validator
from projectors.base import InvalidEvent

__all__ = [
    "EPOCH",
    "ArtistWrites",
    "Deletion",
    "RecordModule",
    "RecordTable",
    "Rows",
    "SubjectWrites",
    "Touched",
    "deletion",
    "event_time",
    "int32",
    "int64",
    "iso",
    "require_record",
    "to_json",
    "valid_record",
]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_INT32_MAX = 2**31 - 1
_INT64_MAX = 2**63 - 1


def event_time(envelope: Envelope) -> datetime:
    """When ingest saw the event (the envelope's ``time``); the epoch if unreadable.

    Used instead of the wall clock for ``indexed_at``-like columns, so a rebuild writes
    the same values.
    """
    try:
        parsed = datetime.fromisoformat(envelope.time.replace("Z", "+00:00"))
    except ValueError:
        return EPOCH
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def iso(value: datetime | None) -> str | None:
    """A datetime as an ISO string for the JSON row batch."""
    return value.isoformat() if value is not None else None


def require_record(envelope: Envelope) -> tuple[str, str, str, dict[str, Any]]:
    """``(uri, rev, cid, record)`` of a created/updated record event."""
    record = envelope.record
    uri = envelope.uri
    if record is None or uri is None or envelope.rev is None or envelope.cid is None:
        raise InvalidEvent(f"{envelope.collection} event without record, uri, rev or cid")
    return uri, envelope.rev, envelope.cid, record


def valid_record(nsid: str, record: Mapping[str, Any]) -> None:
    """Validate against the lexicon; :class:`InvalidEvent` with the field path if not."""
    try:
        record_validator(nsid)(record)
    except ValidationError as exc:
        raise InvalidEvent(str(exc)) from None


def _up_to(value: object, field: str, high: int) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= high:
        raise InvalidEvent(f"{field}: {value!r} is out of range")
    return value


def int32(value: object, field: str) -> int | None:
    """An optional integer that must fit a PostgreSQL ``integer`` column."""
    return _up_to(value, field, _INT32_MAX)


def int64(value: object, field: str) -> int | None:
    """An optional integer that must fit a PostgreSQL ``bigint`` column."""
    return _up_to(value, field, _INT64_MAX)


def to_json(rows: Sequence[Mapping[str, Any]]) -> str:
    """The JSON array a ``jsonb_to_recordset`` statement reads.

    Text PostgreSQL cannot store (NUL, lone surrogates) was refused when the runner
    parsed the event.
    """
    try:
        return orjson.dumps(rows).decode()
    except TypeError:  # an integer beyond 64 bits in a record: the standard library writes any
        return json.dumps(rows, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class Rows:
    """The rows of one statement, encoded: the JSON array and each row's key, in key order.

    Key order is the order rows are written in, so writers of overlapping rows lock them
    in the same order. Encoding where the rows are made means a rebuild's helper process
    does it, and sends the event loop one string per statement instead of pickled
    dictionaries (unpickling and encoding them were a third of the event loop's work).
    """

    json: str
    keys: list[str]

    @classmethod
    def of(cls, rows: Iterable[Mapping[str, Any]], key: str = "uri") -> Rows:
        ordered = sorted(rows, key=lambda row: str(row[key]))
        return cls(to_json(ordered), [str(row[key]) for row in ordered])

    def __bool__(self) -> bool:
        return bool(self.keys)


@dataclass(frozen=True, slots=True)
class Deletion:
    """A record delete: the URI, its repo, the commit rev and the event time."""

    uri: str
    did: str
    rev: str
    at: datetime

    def as_json(self) -> dict[str, Any]:
        return {"uri": self.uri, "did": self.did, "rev": self.rev, "at": self.at.isoformat()}


def deletion(envelope: Envelope) -> Deletion:
    """The :class:`Deletion` of a ``record.deleted`` event."""
    if envelope.uri is None or envelope.rev is None:
        raise InvalidEvent("delete event without uri or rev")
    return Deletion(envelope.uri, envelope.did, envelope.rev, event_time(envelope))


@dataclass(frozen=True, slots=True)
class RecordTable:
    """SQL for one record table keyed by ``uri`` with a ``rev`` column.

    ``columns`` maps each column to its PostgreSQL type; ``touched`` is the column whose
    old and new values a write reports (the subject whose aggregates must be recounted).
    ``derived`` columns are computed in SQL as the rows are written: ``(column,
    expression)`` over the row ``x`` and the relations ``joins`` adds (which may use the
    ``%(uris)s`` array of the batch's URIs). ``tombstones`` is the table of the read
    model's deletes (``key, did, rev, deleted_at``): each projector has its own, so it
    rebuilds alone.
    """

    table: str
    columns: tuple[tuple[str, str], ...]
    touched: str
    derived: tuple[tuple[str, str], ...] = ()
    joins: str = ""
    tombstones: str = "catalog_tombstone"

    @property
    def _recordset(self) -> str:
        spec = ", ".join(f"{name} {kind}" for name, kind in self.columns)
        return f"jsonb_to_recordset(%(rows)s::jsonb) AS x({spec})"

    @property
    def upsert_sql(self) -> str:
        names = [name for name, _ in self.columns] + [name for name, _ in self.derived]
        values = [f"x.{name}" for name, _ in self.columns] + [expr for _, expr in self.derived]
        updates = ", ".join(
            f"{n} = excluded.{n}" for n in names if n not in ("uri", "id", "did", "rkey")
        )
        return (
            f"WITH x AS (SELECT * FROM {self._recordset}),"
            f" old AS (SELECT t.{self.touched} AS touched FROM {self.table} t"
            " WHERE t.uri = ANY(%(uris)b::text[])),"
            f" new AS (INSERT INTO {self.table} ({', '.join(names)})"
            f" SELECT {', '.join(values)} FROM x{self.joins}"
            f" WHERE NOT EXISTS (SELECT 1 FROM {self.tombstones} d"
            f"  WHERE d.key = x.uri AND {rev_sql('d.rev', '>=', 'x.rev')})"
            f" AND NOT EXISTS (SELECT 1 FROM {self.tombstones} d"
            "  WHERE d.key = x.did AND d.rev = '')"
            f" ON CONFLICT (uri) DO UPDATE SET {updates}"
            f" WHERE {rev_sql(self.table + '.rev', '<=', 'excluded.rev')}"
            f" RETURNING uri, {self.touched} AS touched)"
            " SELECT 'new', uri, touched FROM new UNION ALL SELECT 'old', NULL, touched FROM old"
        )

    @property
    def delete_sql(self) -> str:
        return (
            "WITH x AS (SELECT * FROM"
            " jsonb_to_recordset(%s::jsonb) AS x(uri text, did text, rev text, at timestamptz)),"
            f" gone AS (DELETE FROM {self.table} t USING x"
            f"  WHERE t.uri = x.uri AND {rev_sql('t.rev', '<=', 'x.rev')}"
            f"  RETURNING t.{self.touched} AS touched),"
            f" tomb AS (INSERT INTO {self.tombstones} (key, did, rev, deleted_at)"
            "  SELECT uri, did, rev, at FROM x ON CONFLICT (key) DO UPDATE"
            "  SET rev = excluded.rev, deleted_at = excluded.deleted_at"
            f"  WHERE {rev_sql(self.tombstones + '.rev', '<', 'excluded.rev')})"
            " SELECT touched FROM gone"
        )

    async def upsert(self, conn: AsyncConnection, rows: Rows) -> tuple[set[str], set[Any]]:
        """Write rows (keyed by ``uri``) unless stored or tombstoned at a newer rev.

        Returns the URIs written and the ``touched`` values before and after.
        """
        if not rows:
            return set(), set()
        # The URIs again as an array: an index lookup, where a join with the recordset
        # (estimated at 100 rows) would scan the whole table. Text arrays go in binary
        # (%b) everywhere here: psycopg quotes text arrays item by item in Python (2 us
        # per URI), binary is six times cheaper.
        cur = await conn.execute(self.upsert_sql, {"rows": rows.json, "uris": rows.keys})
        written: set[str] = set()
        touched: set[Any] = set()
        for which, uri, value in await cur.fetchall():
            if which == "new":
                written.add(uri)
            if value is not None:
                touched.add(value)
        return written, touched

    async def delete(self, conn: AsyncConnection, deletions: Rows) -> set[Any]:
        """Delete records (unless re-created at a newer rev), leave tombstones.

        ``deletions`` are :meth:`Deletion.as_json` rows. Returns the ``touched`` values of
        the rows removed.
        """
        if not deletions:
            return set()
        cur = await conn.execute(self.delete_sql, (deletions.json,))
        return {row[0] for row in await cur.fetchall() if row[0] is not None}

    async def delete_by_did(self, conn: AsyncConnection, did: str) -> set[Any]:
        """Remove every row of a repo; returns their ``touched`` values."""
        cur = await conn.execute(
            f"DELETE FROM {self.table} WHERE did = %s RETURNING {self.touched}", (did,)
        )
        return {row[0] for row in await cur.fetchall() if row[0] is not None}


@dataclass(frozen=True, slots=True)
class Touched:
    """What a module's rows touched outside their own table.

    ``subjects``: AT-URIs whose aggregates (:mod:`projectors.aggregates`) must be
    recounted; ``counted``: subjects written with fresh counts (no recount needed);
    ``artists``: DIDs whose albums must be derived again.
    """

    subjects: frozenset[str] = frozenset()
    counted: frozenset[str] = frozenset()
    artists: frozenset[str] = frozenset()

    def __or__(self, other: Touched) -> Touched:
        return Touched(
            self.subjects | other.subjects,
            self.counted | other.counted,
            self.artists | other.artists,
        )

    @property
    def recount(self) -> list[str]:
        """The subjects to recount, in key order."""
        return sorted(self.subjects - self.counted)


@dataclass(frozen=True, slots=True)
class SubjectWrites:
    """The writes of records indexed by the subject they point at (likes, comments).

    Their rows touch their subjects' aggregates: the subjects of the rows written are
    known before writing, and every write returns the subjects whose counts changed (old
    and new). A module binds its ``touches``/``insert``/``delete``/``delete_by_did`` to
    one of these instead of writing the four functions again.
    """

    table: RecordTable

    def touches(self, rows: Sequence[Mapping[str, Any]], deletions: Sequence[Deletion]) -> Touched:
        """The subjects of the rows written (a delete's subject is known once read)."""
        del deletions
        return Touched(subjects=frozenset(str(row[self.table.touched]) for row in rows))

    async def insert(self, conn: AsyncConnection, rows: Rows) -> Touched:
        """Write rows (newest rev wins); the subjects whose counts changed."""
        _, subjects = await self.table.upsert(conn, rows)
        return Touched(subjects=frozenset(str(s) for s in subjects))

    async def delete(self, conn: AsyncConnection, deletions: Rows) -> Touched:
        """Delete records (leaving tombstones); the subjects whose counts changed."""
        subjects = await self.table.delete(conn, deletions)
        return Touched(subjects=frozenset(str(s) for s in subjects))

    async def delete_by_did(self, conn: AsyncConnection, did: str) -> Touched:
        """Remove every row of a repo; the subjects whose counts changed."""
        return Touched(
            subjects=frozenset(str(s) for s in await self.table.delete_by_did(conn, did))
        )


@dataclass(frozen=True, slots=True)
class ArtistWrites:
    """The writes of records their artist's albums are made from (lists, tracks).

    What they touch is the artists whose records are written or deleted (their albums are
    derived again), all known before writing, so the deletes report nothing more. A module
    binds its ``touches``/``delete``/``delete_by_did`` to one of these and writes its own
    ``insert``.
    """

    table: RecordTable

    def touches(self, rows: Sequence[Mapping[str, Any]], deletions: Sequence[Deletion]) -> Touched:
        """The artists whose records change."""
        return Touched(
            artists=frozenset({str(r["did"]) for r in rows} | {d.did for d in deletions})
        )

    async def delete(self, conn: AsyncConnection, deletions: Rows) -> Touched:
        """Delete records (unless re-created at a newer rev), leaving tombstones."""
        await self.table.delete(conn, deletions)
        return Touched()

    async def delete_by_did(self, conn: AsyncConnection, did: str) -> Touched:
        """Remove every record of a repo (account deleted)."""
        await self.table.delete_by_did(conn, did)
        return Touched()


class RecordModule(Protocol):
    """One record collection of the catalog: a module of :mod:`projectors`.

    ``SHARED``: its rows are also written by other partitions' workers (tracks are
    recounted by every partition's likes), so it writes in the catalog's write turn.
    """

    COLLECTION: str
    TABLE: RecordTable
    SHARED: bool

    def to_row(self, envelope: Envelope) -> dict[str, Any]:
        """The row (JSON-ready) of a created/updated record; :class:`InvalidEvent`."""
        ...

    def touches(self, rows: Sequence[Mapping[str, Any]], deletions: Sequence[Deletion]) -> Touched:
        """What writing ``rows`` and ``deletions`` touches, known before writing (pure)."""
        ...

    async def insert(self, conn: AsyncConnection, rows: Rows) -> Touched:
        """Write rows (newest rev wins); what the write touched."""
        ...

    async def delete(self, conn: AsyncConnection, deletions: Rows) -> Touched:
        """Delete records, leaving tombstones; what the delete touched."""
        ...

    async def delete_by_did(self, conn: AsyncConnection, did: str) -> Touched:
        """Remove every row of a repo; what that touched."""
        ...
