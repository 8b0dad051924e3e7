"""The catalog projector: artists, tracks, likes, comments, lists and albums (``repo`` topic).

:meth:`CatalogProjector.reduce` and :meth:`~CatalogProjector.write` apply a batch with a few
set-based statements per table: the reduction validates every event (invalid ones are
reported back to the runner for the dead-letter table), keeps per record the event with the
highest rev (a delete wins a tie), per account the last identity/account event, then writes
each table once: artists and profiles, then each record module of :data:`RECORD_MODULES`
in order (the plugin surface :class:`~projectors.records.RecordModule`), then recomputes
what the modules touched: the albums of the artists whose tracks or lists changed and the
aggregates (like and comment counts) of the tracks whose likes, comments or rows changed.
Because the result of the record rules depends only on the set of events (see
:mod:`projectors.records`), the batch gives what applying the events one by one gives.

A deleted account splits the batch: what came before is written, then the repo is purged
from every read model (each module's ``delete_by_did``) and its DID tombstoned.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeAlias

from psycopg import AsyncConnection

from kernel.account import DELETED, account_status
from kernel.envelope import Envelope
from projectors import album, artist, comment, like, lists, profile, track
from projectors.base import InvalidEvent
from projectors.records import Deletion, RecordModule, Rows, Touched, deletion, event_time

__all__ = ["COLLECTIONS", "RECORD_MODULES", "CatalogProjector", "Steps"]

RECORD_MODULES: tuple[RecordModule, ...] = (like, comment, lists, track)
"""The record collections of the catalog, in write order: a module's rows are written
before those of the modules after it (tracks last: a track row counts the likes and
comments already written)."""
_MODULES: dict[str, RecordModule] = {m.COLLECTION: m for m in RECORD_MODULES}
COLLECTIONS = (*_MODULES, *profile.COLLECTIONS)


# pg_advisory_xact_lock key of the catalog's write phase (any constant; "plyrcat" in ASCII).
_WRITE_LOCK = 0x706C7972636174


@dataclass
class _Segment:
    """The reduced events of a run of the batch with no account deletion in it."""

    # Record events per URI: (rev, is delete) → the winning event's row or deletion.
    records: dict[str, tuple[tuple[str, bool], str, Any]] = field(default_factory=dict)
    # Profile events per (collection, DID), same rule.
    profiles: dict[tuple[str, str], tuple[tuple[str, bool], Any]] = field(default_factory=dict)
    handles: dict[str, dict[str, Any]] = field(default_factory=dict)
    statuses: dict[str, dict[str, Any]] = field(default_factory=dict)
    seen: dict[str, datetime] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.records or self.profiles or self.handles or self.statuses or self.seen)

    def keep_record(self, uri: str, order: tuple[str, bool], collection: str, value: Any) -> None:
        current = self.records.get(uri)
        if current is None or order >= current[0]:
            self.records[uri] = (order, collection, value)

    def keep_profile(self, key: tuple[str, str], order: tuple[str, bool], value: Any) -> None:
        current = self.profiles.get(key)
        if current is None or order >= current[0]:
            self.profiles[key] = (order, value)


@dataclass(frozen=True, slots=True)
class _Writes:
    """What a segment writes, encoded (:class:`~projectors.records.Rows`).

    Made by :meth:`CatalogProjector.reduce`, so a rebuild's helper process does the
    sorting and encoding, and :func:`_write` only sends the statements.
    """

    statuses: Rows
    seen: Rows
    handles: Rows
    profiles: tuple[tuple[str, Rows], ...]
    """Per profile collection, its written and deleted (fields NULL) rows."""
    profile_dids: list[str]
    records: tuple[tuple[str, Rows, Rows], ...]
    """Per record module (:data:`RECORD_MODULES` order): collection, upserts, deletes."""
    touched: Touched
    """What the rows touch, known before writing (each module's ``touches``)."""


def _plan(segment: _Segment) -> _Writes:
    """Sort and encode a segment's rows (see :class:`_Writes`)."""
    upserts: dict[str, list[Any]] = {c: [] for c in _MODULES}
    deletes: dict[str, list[Deletion]] = {c: [] for c in _MODULES}
    for _, collection, value in segment.records.values():
        (deletes if isinstance(value, Deletion) else upserts)[collection].append(value)
    profiles = tuple(
        (
            collection,
            Rows.of(
                (
                    profile.deletion_row(value) if isinstance(value, Deletion) else value
                    for (c, _), (_, value) in segment.profiles.items()
                    if c == collection
                ),
                key="did",
            ),
        )
        for collection in profile.COLLECTIONS
    )
    touched = Touched()
    for collection, module in _MODULES.items():
        touched |= module.touches(upserts[collection], deletes[collection])
    seen = ({"did": did, "at": at.isoformat()} for did, at in segment.seen.items())
    return _Writes(
        statuses=Rows.of(segment.statuses.values(), key="did"),
        seen=Rows.of(seen, key="did"),
        handles=Rows.of(segment.handles.values(), key="did"),
        profiles=profiles,
        profile_dids=sorted({did for (_, did) in segment.profiles}),
        records=tuple(
            (c, Rows.of(upserts[c]), Rows.of(d.as_json() for d in deletes[c])) for c in _MODULES
        ),
        touched=touched,
    )


Steps: TypeAlias = "list[_Writes | tuple[str, datetime]]"
"""A reduced batch: segments to write, and between them accounts to purge (DID, time)."""


def _reduce(segment: _Segment, envelope: Envelope) -> None:
    """Fold one event into the segment; :class:`InvalidEvent` if its data is bad."""
    kind = envelope.kind
    did = envelope.did
    at = event_time(envelope)
    if kind in ("identity.changed", "account.changed") and (
        did not in segment.seen or at < segment.seen[did]
    ):
        segment.seen[did] = at
    if kind == "identity.changed":
        entry = segment.handles.setdefault(did, {"did": did, "handle": None})
        entry["handle"] = envelope.handle or entry["handle"]
        entry["at"] = at.isoformat()
        return
    if kind == "account.changed":
        segment.statuses[did] = {
            "did": did,
            "status": account_status(envelope.status, envelope.active),
            "at": at.isoformat(),
        }
        return
    collection = envelope.collection
    if kind not in ("record.created", "record.updated", "record.deleted") or (
        collection not in COLLECTIONS
    ):
        return  # not a catalog event (plays, labels, other collections)
    assert collection is not None
    if envelope.rev is None or envelope.uri is None:
        raise InvalidEvent("record event without rev or uri")
    deleted = kind == "record.deleted"
    order = (envelope.rev, deleted)
    if collection in profile.COLLECTIONS:
        if envelope.rkey != "self":
            raise InvalidEvent(f"{collection}: rkey must be 'self', got {envelope.rkey!r}")
        value: Any = deletion(envelope) if deleted else profile.to_row(envelope)
        segment.keep_profile((collection, did), order, value)
    else:
        value = deletion(envelope) if deleted else _MODULES[collection].to_row(envelope)
        segment.keep_record(envelope.uri, order, collection, value)
    if did not in segment.seen or at < segment.seen[did]:
        segment.seen[did] = at


class _Turn:
    """The catalog's write turn (``pg_advisory_xact_lock``), taken once per transaction.

    Likes and comments of one partition recount tracks of repos in other partitions, so
    writers of track rows take turns: no recount misses another worker's uncommitted
    rows (the next writer's statements start after the previous one committed) and no
    two workers deadlock on track rows. Rows only this partition writes (artists,
    profiles, likes, comments, lists, tombstones) are written before the turn, in
    parallel with other workers.
    """

    def __init__(self) -> None:
        self.held = False

    async def take(self, conn: AsyncConnection) -> None:
        if not self.held:
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_WRITE_LOCK,))
            self.held = True


async def _write(conn: AsyncConnection, writes: _Writes, turn: _Turn) -> None:
    """Write one reduced segment (see the module docstring for the order)."""
    # Statuses first: a reactivation lifts the account tombstone for what follows.
    await artist.apply_statuses(conn, writes.statuses)
    await artist.touch_artists(conn, writes.seen)
    await artist.apply_handles(conn, writes.handles)
    for collection, rows in writes.profiles:
        await profile.insert_profiles(conn, collection, rows)
    await artist.refresh_effective(conn, writes.profile_dids)
    touched = writes.touched
    for collection, upserts, deletes in writes.records:
        module = _MODULES[collection]
        if module.SHARED:
            await turn.take(conn)
        touched |= await module.delete(conn, deletes)
        touched |= await module.insert(conn, upserts)
    await turn.take(conn)  # albums and recounts write track rows
    await album.refresh_albums(conn, sorted(touched.artists))
    await track.recount(conn, touched.recount)


async def purge_account(conn: AsyncConnection, did: str, at: datetime) -> None:
    """Remove a deleted account from every catalog read model and tombstone its DID."""
    touched = Touched()
    for module in RECORD_MODULES:
        touched |= await module.delete_by_did(conn, did)
    await album.delete_by_did(conn, did)
    await profile.delete_by_did(conn, did)
    await artist.delete_by_did(conn, did)
    await artist.tombstone_account(conn, did, at)
    await track.recount(conn, touched.recount)


class CatalogProjector:
    """Dispatches repo events to the catalog read-model modules, a batch at a time."""

    name = "catalog"
    tables: tuple[str, ...] = (
        "track",
        "artist",
        "like",
        "comment",
        "list_item",
        "list",
        "album",
        "catalog_tombstone",
    )

    async def apply(self, conn: AsyncConnection, envelope: Envelope) -> None:
        """Apply one event; :class:`InvalidEvent` if its data is bad."""
        steps, rejected = self.reduce([envelope])
        if rejected:
            raise InvalidEvent(rejected[0][1])
        await self.write(conn, steps)

    def reduce(self, envelopes: Sequence[Envelope]) -> tuple[Steps, list[tuple[int, str]]]:
        """Validate and reduce a batch (pure, so it can run in another process).

        Returns what :meth:`write` writes, and ``(index, reason)`` of the invalid events.
        """
        rejected: list[tuple[int, str]] = []
        steps: Steps = []
        segment = _Segment()
        for index, envelope in enumerate(envelopes):
            if envelope.kind == "account.changed" and (
                account_status(envelope.status, envelope.active) == DELETED
            ):
                if segment:
                    steps.append(_plan(segment))
                steps.append((envelope.did, event_time(envelope)))
                segment = _Segment()
                continue
            try:
                _reduce(segment, envelope)
            except InvalidEvent as exc:
                rejected.append((index, str(exc)))
        if segment:
            steps.append(_plan(segment))
        return steps, rejected

    async def write(self, conn: AsyncConnection, steps: Steps) -> None:
        """Write what :meth:`reduce` returned, inside the caller's transaction."""
        turn = _Turn()
        for step in steps:
            if isinstance(step, _Writes):
                await _write(conn, step, turn)
            else:
                await turn.take(conn)  # a purge deletes tracks and recounts
                await purge_account(conn, *step)
