"""The ``search`` read model: one document per track, artist, album and playlist.

Fed from the ``repo`` topic by its own runner offsets (projector name ``search``), so it
can be rebuilt without touching the catalog. Schema: ``migrations/0006_search.sql``; the
query side is ``api/search.py``.

- Tracks: title (``fm.plyr.track``); the record's tags (:mod:`kernel.tags`, the rule the
  catalog's ``track.tags`` follows too) feed ``search_tag`` (plyr's own tags never reach
  the network, so this is empty today).
- Artists: the display name (``app.bsky.actor.profile`` ``displayName``, else the
  ``artist`` string of the newest track, else the handle) and the handle (identity events).
- Albums: the catalog's rule (:func:`projectors.album.derive`: slugs, titles, members,
  ``track_count`` = the tracks on the album), over what search keeps of the artist's
  tracks and ``fm.plyr.list`` records of type ``album``, recomputed per artist.
- Playlists: ``fm.plyr.list`` records of type ``playlist`` with a name.

Every record event is guarded by :data:`RECORDS` (``search_record``, ``search_tombstone``;
the rule of :mod:`projectors.records`): the highest commit rev wins, a delete beats a
write of the same rev and leaves a tombstone, so replays, duplicates and out-of-order
delivery give the same documents. An account deletion purges
the DID (:func:`delete_by_did`). Moderation is not applied here: visibility is decided at
query time, so labels and account changes take effect without re-projecting.

A batch is applied at once, as the catalog's (:class:`~projectors.runner.ReducingProjector`):
:meth:`SearchProjector.reduce` validates the events and folds them per record and per
artist (pure, so a rebuild runs it in a helper process); :meth:`~SearchProjector.write`
claims the records' rows with one statement each for writes and deletes, learns from
the store which writes and deletes took effect, writes each table once, then derives
again the artist documents and the albums of the artists the batch touched. The result
is what applying the events one at a time in the same order gives, table for table,
including what depends on that order (the handle of the last identity event; a write a
later delete of the batch removes still sets its artist's ``track_artist``), which
``tests/integration/test_search_batch_agreement.py`` holds against the per-event
projector this replaced (:mod:`testkit.search_reference`). A deleted account splits the
batch: what came before is written, then the DID is purged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeAlias

from psycopg import AsyncConnection

from kernel.envelope import Envelope
from kernel.identity import INVALID_HANDLE
from kernel.ids import BSKY_AVATAR_PARTS, track_id
from kernel.revs import rev_sql
from kernel.tags import record_tags
from lexicons import ValidationError, validate_record
from projectors import album
from projectors.album import AlbumList, AlbumTrack, slugify
from projectors.artist import AVATAR_URL_SQL
from projectors.base import InvalidEvent, parse_datetime
from projectors.records import RecordTable, Rows, deletion, to_json
from projectors.reduction import (
    RecordEvents,
    apply_one,
    deleted_account,
    deletion_rows,
    reduce_segments,
)

__all__ = [
    "BSKY_PROFILE",
    "LIST",
    "PLYR_PROFILE",
    "RECORDS",
    "TRACK",
    "ListDoc",
    "SearchProjector",
    "TrackDoc",
    "album_key",
    "delete_by_did",
    "list_doc",
    "profile_fields",
    "track_doc",
]

TRACK = "fm.plyr.track"
LIST = "fm.plyr.list"
BSKY_PROFILE = "app.bsky.actor.profile"
PLYR_PROFILE = "fm.plyr.actor.profile"


@dataclass(frozen=True, slots=True)
class TrackDoc:
    """What search keeps of a track record."""

    uri: str
    did: str
    rev: str
    title: str
    artist: str
    album: str | None
    image_url: str | None
    created_at: datetime
    tags: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ListDoc:
    """What search keeps of a list record."""

    uri: str
    did: str
    rev: str
    name: str | None
    list_type: str | None
    item_count: int
    created_at: datetime
    items: list[str]
    """The AT-URIs the list names, in order."""


def _validated(envelope: Envelope, nsid: str) -> tuple[str, str, dict[str, Any]]:
    record, uri, rev = envelope.record, envelope.uri, envelope.rev
    if record is None or uri is None or rev is None:
        raise InvalidEvent(f"{nsid} event without record, uri or rev")
    try:
        validate_record(nsid, record)
    except ValidationError as exc:
        raise InvalidEvent(str(exc)) from None
    return uri, rev, record


def track_doc(envelope: Envelope) -> TrackDoc:
    """The search view of a created/updated track; :class:`InvalidEvent` if invalid."""
    uri, rev, record = _validated(envelope, TRACK)
    album = record.get("album")
    image = record.get("imageUrl")
    return TrackDoc(
        uri=uri,
        did=envelope.did,
        rev=rev,
        title=record["title"],
        artist=record["artist"],
        album=album if isinstance(album, str) and album.strip() else None,
        image_url=image if isinstance(image, str) else None,
        created_at=parse_datetime(record["createdAt"], "createdAt"),
        tags=record_tags(record),
    )


def list_doc(envelope: Envelope) -> ListDoc:
    """The search view of a created/updated list; :class:`InvalidEvent` if invalid."""
    uri, rev, record = _validated(envelope, LIST)
    name = record.get("name")
    list_type = record.get("listType")
    items = record.get("items")
    return ListDoc(
        uri=uri,
        did=envelope.did,
        rev=rev,
        name=name if isinstance(name, str) and name.strip() else None,
        list_type=list_type if isinstance(list_type, str) else None,
        item_count=len(items) if isinstance(items, list) else 0,
        items=[item["subject"]["uri"] for item in items] if isinstance(items, list) else [],
        created_at=parse_datetime(record["createdAt"], "createdAt"),
    )


def profile_fields(envelope: Envelope) -> dict[str, str | None]:
    """The profile fields search uses, by ``search_artist`` column."""
    record = envelope.record or {}
    nsid = envelope.collection
    assert nsid is not None
    try:
        validate_record(nsid, record)
    except ValidationError as exc:
        raise InvalidEvent(str(exc)) from None
    if nsid == BSKY_PROFILE:
        name = record.get("displayName")
        avatar = record.get("avatar")
        ref = avatar.get("ref") if isinstance(avatar, dict) else None
        cid = ref.get("$link") if isinstance(ref, dict) else None
        return {
            "bsky_display_name": (name.strip() or None) if isinstance(name, str) else None,
            "bsky_avatar_cid": cid if isinstance(cid, str) else None,
        }
    avatar_url = record.get("avatar")
    return {"plyr_avatar_url": avatar_url if isinstance(avatar_url, str) else None}


def album_key(did: str, slug: str) -> str:
    """The ``search_doc`` key of an artist's album (``search_album_member.album_key``)."""
    return f"{did} {slug}"


# The records search has seen: a row per live record at its newest rev, a tombstone per
# deleted one (the rule of :mod:`projectors.records`).
RECORDS = RecordTable(
    "search_record",
    (("uri", "text"), ("did", "text"), ("rev", "text")),
    touched="uri",
    tombstones="search_tombstone",
)

# The search_artist columns a profile sets, by collection; a deleted profile clears them.
_PROFILE_COLUMNS = {
    BSKY_PROFILE: ("bsky_display_name", "bsky_avatar_cid"),
    PLYR_PROFILE: ("plyr_avatar_url",),
}


@dataclass
class _Segment:
    """The reduced events of a run of the batch with no account deletion in it."""

    records: dict[str, RecordEvents] = field(default_factory=dict)
    handles: dict[str, str | None] = field(default_factory=dict)
    """Per DID with identity events: the handle they leave (None: cleared)."""
    identities: set[str] = field(default_factory=set)

    def __bool__(self) -> bool:
        return bool(self.records or self.identities)

    def record(self, envelope: Envelope) -> RecordEvents:
        uri = envelope.uri
        assert uri is not None and envelope.collection is not None  # record events have them
        entry = self.records.get(uri)
        if entry is None:
            entry = self.records[uri] = RecordEvents(envelope.did, envelope.collection)
        return entry


@dataclass(frozen=True, slots=True)
class _Writes:
    """A segment as :meth:`SearchProjector.write` takes it: the record rows to claim and,
    per record, what it writes if it takes effect (decided against the stored revs; see
    :class:`~projectors.reduction.RecordEvents`)."""

    claims: Rows
    """The write that can take effect per record: ``uri, did, rev``."""
    deletions: Rows
    records: dict[str, RecordEvents]
    handles: list[tuple[str, str | None]]
    identities: list[str]


Steps: TypeAlias = "list[_Writes | str]"
"""A reduced batch: segments to write, and between them the DIDs of deleted accounts."""


def _plan(segment: _Segment) -> _Writes:
    claims = [
        {"uri": uri, "did": entry.did, "rev": entry.write[0]}
        for uri, entry in segment.records.items()
        if entry.write is not None
    ]
    return _Writes(
        claims=Rows.of(claims),
        deletions=deletion_rows(segment.records.values()),
        records=segment.records,
        handles=sorted(segment.handles.items()),
        identities=sorted(segment.identities),
    )


def _reduce(segment: _Segment, envelope: Envelope, position: int) -> None:
    """Fold one event into the segment; :class:`InvalidEvent` if its data is bad."""
    kind = envelope.kind
    if kind == "identity.changed":
        segment.identities.add(envelope.did)
        if envelope.handle == INVALID_HANDLE:
            # An unverified handle is no handle to search by (nor a name to show).
            segment.handles[envelope.did] = None
        elif envelope.handle is not None:
            segment.handles[envelope.did] = envelope.handle
        return
    collection = envelope.collection
    if kind not in ("record.created", "record.updated", "record.deleted") or (
        collection not in (TRACK, LIST, BSKY_PROFILE, PLYR_PROFILE)
    ):
        return
    if kind == "record.deleted":
        segment.record(envelope).fold_delete(deletion(envelope), position)
        return
    document: Any
    if collection == TRACK:
        document = track_doc(envelope)
    elif collection == LIST:
        document = list_doc(envelope)
    else:
        document = profile_fields(envelope)
    assert envelope.rev is not None  # record events have one
    segment.record(envelope).fold_write(envelope.rev, position, document)


@dataclass(frozen=True, slots=True)
class _Effects:
    """What a segment's records do once their claims are settled against the store."""

    applied: dict[str, RecordEvents]
    """Records whose write took effect and stands (the stored row is that write)."""
    removed: dict[str, RecordEvents]
    """Records a delete of the batch took away (no row left)."""
    claimed: dict[str, RecordEvents]
    """Records whose write took effect, even if a later delete took it away."""


async def _settle(conn: AsyncConnection, writes: _Writes) -> _Effects:
    """Write the record rows and tombstones; what took effect (see :class:`_Effects`).

    Each record's write is claimed before its delete, as one by one a delete after the
    write removes what the write claimed (and the write still had its effects).
    """
    claimed, _ = await RECORDS.upsert(conn, writes.claims)
    await RECORDS.delete(conn, writes.deletions)
    remaining: set[str] = set()
    if writes.deletions:
        cur = await conn.execute(
            "SELECT uri FROM search_record WHERE uri = ANY(%b::text[])", (writes.deletions.keys,)
        )
        remaining = {row[0] for row in await cur.fetchall()}
    records = writes.records
    deleted = set(writes.deletions.keys)
    return _Effects(
        applied={u: records[u] for u in claimed if u not in deleted or u in remaining},
        removed={u: records[u] for u in deleted if u not in remaining},
        claimed={u: records[u] for u in claimed},
    )


async def _write_documents(conn: AsyncConnection, effects: _Effects) -> list[str]:
    """Track and playlist documents, album members and tags; the DIDs whose albums may
    have changed."""
    tracks: list[TrackDoc] = []
    lists: list[ListDoc] = []
    for entry in effects.applied.values():
        assert entry.write is not None
        document = entry.write[2]
        if isinstance(document, TrackDoc):
            tracks.append(document)
        elif isinstance(document, ListDoc):
            lists.append(document)
    removed = [u for u, e in effects.removed.items() if e.collection in (TRACK, LIST)]
    docs: list[dict[str, Any]] = []
    members: list[dict[str, Any]] = []
    tags: list[dict[str, Any]] = []
    for track in tracks:
        docs.append(
            {
                "doc_type": "track",
                "doc_key": track.uri,
                "did": track.did,
                "item_id": track_id(track.uri),
                "title": track.title,
                "image_url": track.image_url,
                "track_count": 0,
                "created_at": track.created_at.isoformat(),
            }
        )
        if track.album is not None:
            member = _member(track.uri, track.did, track.album, "track", track.created_at)
            members.append({**member, "image_url": track.image_url})
        tags += ({"track_uri": track.uri, "did": track.did, "tag": tag} for tag in track.tags)
    for doc in lists:
        if doc.name is not None and doc.list_type == "playlist":
            docs.append(
                {
                    "doc_type": "playlist",
                    "doc_key": doc.uri,
                    "did": doc.did,
                    "item_id": None,
                    "title": doc.name,
                    "image_url": None,
                    "track_count": doc.item_count,
                    "created_at": doc.created_at.isoformat(),
                }
            )
        elif doc.name is not None and doc.list_type == "album":
            member = _member(doc.uri, doc.did, doc.name, "list", doc.created_at)
            members.append({**member, "item_count": doc.item_count, "items": doc.items})
    list_uris = sorted(doc.uri for doc in lists)
    if removed or list_uris:
        await conn.execute(
            "DELETE FROM search_doc WHERE (doc_type IN ('track', 'playlist')"
            " AND doc_key = ANY(%b::text[]))"
            " OR (doc_type = 'playlist' AND doc_key = ANY(%b::text[]))",
            (sorted(removed), list_uris),
        )
    if docs:
        await conn.execute(
            "INSERT INTO search_doc (doc_type, doc_key, did, uri, item_id, title, image_url,"
            " track_count, created_at) SELECT doc_type, doc_key, did, doc_key, item_id, title,"
            " image_url, track_count, created_at FROM jsonb_to_recordset(%s::jsonb) AS x("
            "doc_type text, doc_key text, did text, item_id bigint, title text, image_url text,"
            " track_count integer, created_at timestamptz)"
            " ON CONFLICT (doc_type, doc_key) DO UPDATE SET title = excluded.title,"
            " image_url = excluded.image_url, created_at = excluded.created_at",
            (to_json(sorted(docs, key=lambda d: (d["doc_type"], d["doc_key"]))),),
        )
    sources = sorted({*removed, *list_uris, *(t.uri for t in tracks)})
    # Albums change where members came or went, or where a track an album list of its
    # artist names changed (as one event at a time: the albums of other artists, derived
    # from what did not change, are already what derivation gives).
    albums = {member["did"] for member in members}
    if sources:
        cur = await conn.execute(
            "DELETE FROM search_album_member WHERE source_uri = ANY(%b::text[]) RETURNING did",
            (sources,),
        )
        albums |= {row[0] for row in await cur.fetchall()}
        await conn.execute("DELETE FROM search_tag WHERE track_uri = ANY(%b::text[])", (sources,))
    if members:
        await conn.execute(
            "INSERT INTO search_album_member (album_key, source_uri, did, kind, title,"
            " item_count, created_at, image_url, items) SELECT album_key, source_uri, did, kind,"
            " title, item_count, created_at, image_url,"
            " ARRAY(SELECT jsonb_array_elements_text(items)) FROM jsonb_to_recordset(%s::jsonb)"
            " AS x(album_key text, source_uri text, did text, kind text, title text,"
            " item_count integer, created_at timestamptz, image_url text, items jsonb)",
            (to_json(members),),
        )
    if tags:
        await conn.execute(
            "INSERT INTO search_tag (track_uri, did, tag) SELECT track_uri, did, tag"
            " FROM jsonb_to_recordset(%s::jsonb) AS x(track_uri text, did text, tag text)",
            (to_json(tags),),
        )
    changed = {t.uri: t.did for t in tracks}
    changed.update((u, e.did) for u, e in effects.removed.items() if e.collection == TRACK)
    if changed:
        cur = await conn.execute(
            "SELECT DISTINCT m.did FROM search_album_member m, unnest(%b::text[], %b::text[])"
            " AS x(uri, did) WHERE m.did = x.did AND m.kind = 'list' AND x.uri = ANY(m.items)",
            (list(changed), list(changed.values())),
        )
        albums |= {row[0] for row in await cur.fetchall()}
    return sorted(albums)


def _member(
    source_uri: str, did: str, title: str, kind: str, created_at: datetime
) -> dict[str, Any]:
    """A ``search_album_member`` row: what ``source_uri`` contributes to its artist's albums
    (no image, no items: the caller adds a track's image, a list's items and count)."""
    return {
        "album_key": album_key(did, slugify(title)),
        "source_uri": source_uri,
        "did": did,
        "kind": kind,
        "title": title,
        "item_count": 0,
        "created_at": created_at.isoformat(),
        "image_url": None,
        "items": [],
    }


async def _write_artists(conn: AsyncConnection, writes: _Writes, effects: _Effects) -> None:
    """The artists' rows (handles, newest track's artist string, profiles), then documents."""
    dids = set(writes.identities)
    newest: dict[str, tuple[str, int, str]] = {}
    for entry in effects.claimed.values():
        assert entry.write is not None
        rev, position, document = entry.write
        if isinstance(document, TrackDoc):
            dids.add(entry.did)
            # One by one, the newest track wins; of the same rev, the last applied.
            current = newest.get(entry.did)
            if current is None or (rev, position) > current[:2]:
                newest[entry.did] = (rev, position, document.artist)
    # Per artist and profile collection, the last profile event that took effect.
    profiles: dict[tuple[str, str], tuple[int, dict[str, str | None]]] = {}
    for entry, position, fields in _profile_effects(effects):
        dids.add(entry.did)
        key = (entry.collection, entry.did)
        if key not in profiles or position > profiles[key][0]:
            profiles[key] = (position, fields)
    if not dids:
        return
    ordered = sorted(dids)
    await conn.execute(
        "INSERT INTO search_artist (did) SELECT unnest(%b::text[]) ON CONFLICT DO NOTHING",
        (ordered,),
    )
    if writes.handles:
        await conn.execute(
            "UPDATE search_artist a SET handle = x.handle FROM jsonb_to_recordset(%s::jsonb)"
            " AS x(did text, handle text) WHERE a.did = x.did",
            (to_json([{"did": did, "handle": handle} for did, handle in writes.handles]),),
        )
    if newest:
        rows = [{"did": d, "rev": r, "artist": a} for d, (r, _, a) in sorted(newest.items())]
        await conn.execute(
            "UPDATE search_artist a SET track_artist = x.artist, track_rev = x.rev"
            " FROM jsonb_to_recordset(%s::jsonb) AS x(did text, rev text, artist text)"
            " WHERE a.did = x.did AND (a.track_rev IS NULL"
            f" OR {rev_sql('a.track_rev', '<=', 'x.rev')})",
            (to_json(rows),),
        )
    for collection, columns in _PROFILE_COLUMNS.items():
        changed = [
            {"did": did, **fields}
            for (c, did), (_, fields) in sorted(profiles.items())
            if c == collection
        ]
        if changed:
            # Column names come from _PROFILE_COLUMNS, never from the record.
            await conn.execute(
                f"UPDATE search_artist a SET {', '.join(f'{c} = x.{c}' for c in columns)}"
                " FROM jsonb_to_recordset(%s::jsonb) AS x(did text,"
                f" {', '.join(f'{c} text' for c in columns)}) WHERE a.did = x.did",
                (to_json(changed),),
            )
    await _refresh_artists(conn, ordered)


def _profile_effects(
    effects: _Effects,
) -> list[tuple[RecordEvents, int, dict[str, str | None]]]:
    """The profile records that changed: the fields they set and when (a delete clears)."""
    changed: list[tuple[RecordEvents, int, dict[str, str | None]]] = []
    for entry in effects.applied.values():
        if entry.collection in _PROFILE_COLUMNS:
            assert entry.write is not None
            changed.append((entry, entry.write[1], entry.write[2]))
    for entry in effects.removed.values():
        columns = _PROFILE_COLUMNS.get(entry.collection)
        if columns is not None:
            changed.append((entry, entry.last_delete, dict.fromkeys(columns)))
    return changed


async def _refresh_artists(conn: AsyncConnection, dids: list[str]) -> None:
    """Derive the artist documents of ``dids`` from their ``search_artist`` rows."""
    await conn.execute(
        "INSERT INTO search_doc (doc_type, doc_key, did, uri, title, alt, image_url)"
        " SELECT 'artist', did, did, did,"
        "  coalesce(bsky_display_name, track_artist, handle, did), handle,"
        f"  {AVATAR_URL_SQL}"
        " FROM search_artist WHERE did = ANY(%b::text[]) ORDER BY did"
        " ON CONFLICT (doc_type, doc_key) DO UPDATE SET title = excluded.title,"
        "  alt = excluded.alt, image_url = excluded.image_url"
        " WHERE (search_doc.title, search_doc.alt, search_doc.image_url)"
        "  IS DISTINCT FROM (excluded.title, excluded.alt, excluded.image_url)",
        (*BSKY_AVATAR_PARTS, dids),
    )


async def _refresh_albums(conn: AsyncConnection, dids: list[str]) -> None:
    """Recompute the artists' album documents by the catalog's rule (:func:`album.derive`).

    Inputs: the artists' album lists and titled tracks (``search_album_member``), and the
    track documents of the untitled tracks those lists name.
    """
    if not dids:
        return
    cur = await conn.execute(
        "SELECT did, source_uri, kind, title, created_at, image_url, items"
        " FROM search_album_member WHERE did = ANY(%b::text[])",
        (dids,),
    )
    tracks: dict[str, dict[str, AlbumTrack]] = {did: {} for did in dids}
    lists: dict[str, list[AlbumList]] = {did: [] for did in dids}
    for did, uri, kind, title, created_at, image_url, items in await cur.fetchall():
        if kind == "track":
            tracks[did][uri] = AlbumTrack(uri, title, created_at, image_url)
        else:
            lists[did].append(AlbumList(uri, title, created_at, None, tuple(items)))
    listed = {
        did: {item for entry in lists[did] for item in entry.items} - tracks[did].keys()
        for did in dids
    }
    wanted = sorted(set().union(*listed.values()))
    if wanted:
        cur = await conn.execute(
            "SELECT did, doc_key, created_at, image_url FROM search_doc"
            " WHERE doc_type = 'track' AND doc_key = ANY(%b::text[])",
            (wanted,),
        )
        for did, uri, created_at, image_url in await cur.fetchall():
            if uri in listed.get(did, ()):
                tracks[did][uri] = AlbumTrack(uri, None, created_at, image_url)
    rows: list[dict[str, Any]] = []
    for did in dids:
        albums, _ = album.derive(did, list(tracks[did].values()), lists[did])
        rows += (
            {
                "doc_key": album_key(did, row["slug"]),
                "did": did,
                "uri": row["list_uri"],
                "title": row["title"],
                "slug": row["slug"],
                "image_url": row["image_url"],
                "track_count": row["track_count"],
                "created_at": row["created_at"],
            }
            for row in albums
        )
    await conn.execute(
        "DELETE FROM search_doc d WHERE d.doc_type = 'album' AND d.did = ANY(%b::text[])"
        " AND NOT EXISTS (SELECT 1 FROM unnest(%b::text[]) AS k(key) WHERE k.key = d.doc_key)",
        (dids, [row["doc_key"] for row in rows]),
    )
    if rows:
        columns = ("uri", "title", "slug", "image_url", "track_count", "created_at")
        await conn.execute(
            "INSERT INTO search_doc (doc_type, doc_key, did, uri, title, slug, image_url,"
            " track_count, created_at) SELECT 'album', doc_key, did, uri, title, slug,"
            " image_url, track_count, created_at FROM jsonb_to_recordset(%s::jsonb) AS x("
            "doc_key text, did text, uri text, title text, slug text, image_url text,"
            " track_count integer, created_at timestamptz)"
            " ON CONFLICT (doc_type, doc_key) DO UPDATE SET "
            + ", ".join(f"{c} = excluded.{c}" for c in columns)
            + f" WHERE ({', '.join('search_doc.' + c for c in columns)})"
            f" IS DISTINCT FROM ({', '.join('excluded.' + c for c in columns)})",
            (to_json(sorted(rows, key=lambda r: str(r["doc_key"]))),),
        )


async def delete_by_did(conn: AsyncConnection, did: str) -> None:
    """Purge everything search holds about a repo (account deleted)."""
    for table in (
        "search_doc",
        "search_album_member",
        "search_tag",
        "search_record",
        "search_tombstone",
    ):
        await conn.execute(f"DELETE FROM {table} WHERE did = %s", (did,))
    await conn.execute("DELETE FROM search_artist WHERE did = %s", (did,))


class SearchProjector:
    """Projects the ``repo`` topic into the search documents."""

    name = "search"
    tables: tuple[str, ...] = (
        "search_doc",
        "search_album_member",
        "search_tag",
        "search_artist",
        "search_record",
        "search_tombstone",
    )

    async def apply(self, conn: AsyncConnection, envelope: Envelope) -> None:
        """Apply one repo event (a batch of one); :class:`InvalidEvent` if its data is bad."""
        await apply_one(self, conn, envelope)

    def reduce(self, envelopes: Sequence[Envelope]) -> tuple[Steps, list[tuple[int, str]]]:
        """Validate and fold a batch (pure): what :meth:`write` writes, and ``(index,
        reason)`` of the invalid events. A deleted account cuts it (its DID is the step)."""
        return reduce_segments(envelopes, _Segment, _reduce, _plan, deleted_account)

    async def write(self, conn: AsyncConnection, steps: Steps) -> None:
        """Write what :meth:`reduce` returned, inside the caller's transaction."""
        for step in steps:
            if isinstance(step, str):
                await delete_by_did(conn, step)
                continue
            effects = await _settle(conn, step)
            dids = await _write_documents(conn, effects)
            await _write_artists(conn, step, effects)
            await _refresh_albums(conn, dids)
