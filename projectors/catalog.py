"""The catalog projector: artists, tracks, likes, comments, lists and albums (``repo`` topic).

:meth:`CatalogProjector.reduce` and :meth:`~CatalogProjector.write` apply a batch with a few
set-based statements per table: the reduction validates every event (invalid ones are
reported back to the runner for the dead-letter table), keeps per record the event with the
highest rev (a delete wins a tie), per account the last identity/account event, then writes
each table once, recomputes the albums of the artists whose tracks or lists changed and
recounts likes and comments of the tracks whose likes, comments or rows changed. Because the
result of the record rules depends only on the set of events (see
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

from plyr_appview.envelope import Envelope
from projectors import album, artist, comment, like, lists, profile, track
from projectors.base import InvalidEvent
from projectors.records import Deletion, deletion, event_time

__all__ = ["COLLECTIONS", "CatalogProjector", "Steps"]

COLLECTIONS = (
    track.COLLECTION,
    like.COLLECTION,
    comment.COLLECTION,
    lists.COLLECTION,
    *profile.COLLECTIONS,
)


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


Steps: TypeAlias = "list[_Segment | tuple[str, datetime]]"
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
            "status": artist.status_of(envelope.status, envelope.active),
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
        if deleted:
            value = deletion(envelope)
        elif collection == track.COLLECTION:
            value = track.to_row(envelope)
        elif collection == like.COLLECTION:
            value = like.to_row(envelope)
        elif collection == comment.COLLECTION:
            value = comment.to_row(envelope)
        else:
            value = lists.to_row(envelope)
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


async def _write(conn: AsyncConnection, segment: _Segment, turn: _Turn) -> None:
    """Write one reduced segment (see the module docstring for the order)."""
    upserts: dict[str, list[Any]] = {c: [] for c in COLLECTIONS}
    deletes: dict[str, list[Deletion]] = {c: [] for c in COLLECTIONS}
    for _, collection, value in segment.records.values():
        (deletes if isinstance(value, Deletion) else upserts)[collection].append(value)
    # Statuses first: a reactivation lifts the account tombstone for what follows.
    await artist.apply_statuses(conn, sorted(segment.statuses.values(), key=lambda r: r["did"]))
    await artist.touch_artists(conn, segment.seen)
    await artist.apply_handles(conn, sorted(segment.handles.values(), key=lambda r: r["did"]))
    profile_dids: set[str] = set()
    for collection in profile.COLLECTIONS:
        rows = [v for (c, _), (_, v) in sorted(segment.profiles.items()) if c == collection]
        await profile.insert_profiles(
            conn, collection, [r for r in rows if not isinstance(r, Deletion)]
        )
        gone = [r for r in rows if isinstance(r, Deletion)]
        await profile.delete_profiles(conn, collection, gone)
        profile_dids.update(r.did if isinstance(r, Deletion) else r["did"] for r in rows)

    subjects = {
        row["subject_uri"] for c in (like.COLLECTION, comment.COLLECTION) for row in upserts[c]
    }
    album_dids = {r["did"] for r in upserts[track.COLLECTION]}
    album_dids |= {d.did for c in (track.COLLECTION, lists.COLLECTION) for d in deletes[c]}
    album_dids |= {entry.row["did"] for entry in upserts[lists.COLLECTION]}
    recount = set(subjects)
    recount |= await like.delete_likes(conn, sorted(deletes[like.COLLECTION], key=_uri))
    recount |= await like.insert_likes(conn, sorted(upserts[like.COLLECTION], key=_row_uri))
    recount |= await comment.delete_comments(conn, sorted(deletes[comment.COLLECTION], key=_uri))
    recount |= await comment.insert_comments(
        conn, sorted(upserts[comment.COLLECTION], key=_row_uri)
    )
    await lists.delete_lists(conn, sorted(deletes[lists.COLLECTION], key=_uri))
    await lists.insert_lists(
        conn, sorted(upserts[lists.COLLECTION], key=lambda e: str(e.row["uri"]))
    )
    await artist.refresh_effective(conn, sorted(profile_dids))
    await turn.take(conn)
    # Tracks after likes and comments: a track row written here is counted as it is
    # written; a deleted one has nothing to count.
    await track.delete_tracks(conn, sorted(deletes[track.COLLECTION], key=_uri))
    recount -= await track.insert_tracks(conn, sorted(upserts[track.COLLECTION], key=_row_uri))
    await album.refresh_albums(conn, sorted(album_dids))
    await track.recount(conn, sorted(recount))


def _uri(value: Deletion) -> str:
    return value.uri


def _row_uri(value: dict[str, Any]) -> str:
    return str(value["uri"])


async def purge_account(conn: AsyncConnection, did: str, at: datetime) -> None:
    """Remove a deleted account from every catalog read model and tombstone its DID."""
    subjects = await like.delete_by_did(conn, did)
    subjects |= await comment.delete_by_did(conn, did)
    await lists.delete_by_did(conn, did)
    await album.delete_by_did(conn, did)
    await track.delete_by_did(conn, did)
    await profile.delete_by_did(conn, did)
    await artist.delete_by_did(conn, did)
    await artist.tombstone_account(conn, did, at)
    await track.recount(conn, sorted(subjects))


class CatalogProjector:
    """Dispatches repo events to the catalog read-model modules, a batch at a time."""

    name = "catalog"
    topic = "repo"
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
                artist.status_of(envelope.status, envelope.active) == "deleted"
            ):
                steps += [segment, (envelope.did, event_time(envelope))]
                segment = _Segment()
                continue
            try:
                _reduce(segment, envelope)
            except InvalidEvent as exc:
                rejected.append((index, str(exc)))
        steps.append(segment)
        return steps, rejected

    async def write(self, conn: AsyncConnection, steps: Steps) -> None:
        """Write what :meth:`reduce` returned, inside the caller's transaction."""
        turn = _Turn()
        for step in steps:
            if isinstance(step, _Segment):
                if step:
                    await _write(conn, step, turn)
            else:
                await turn.take(conn)  # a purge deletes tracks and recounts
                await purge_account(conn, *step)
