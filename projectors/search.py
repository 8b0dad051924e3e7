"""The ``search`` read model: one document per track, artist, album and playlist.

Fed from the ``repo`` topic by its own runner offsets (projector name ``search``), so it
can be rebuilt without touching the catalog. Schema: ``migrations/0006_search.sql``; the
query side is ``api/search.py``.

- Tracks: title (``fm.plyr.track``); the record's tags (:mod:`kernel.tags`, the rule the
  catalog's ``track.tags`` follows too) feed ``search_tag`` (plyr's own tags never reach
  the network, so this is empty today).
- Artists: the display name (``app.bsky.actor.profile`` ``displayName``, else the
  ``artist`` string of the newest track, else the handle) and the handle (identity events).
- Albums: one per (artist, album slug) — the same slug rule as the catalog
  (:func:`projectors.album.slugify`), so ids agree — from track ``album`` titles and
  ``fm.plyr.list`` records of type ``album``; it exists while it has members.
- Playlists: ``fm.plyr.list`` records of type ``playlist`` with a name.

Every record event is guarded by ``search_record``: the highest commit rev wins, a delete
beats a write of the same rev and leaves a tombstone, duplicates are no-ops, so replays,
duplicates and out-of-order delivery give the same documents. An account deletion purges
the DID (:func:`delete_by_did`). Moderation is not applied here: visibility is decided at
query time, so labels and account changes take effect without re-projecting.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection

from kernel.account import DELETED, account_status
from kernel.envelope import Envelope
from kernel.ids import BSKY_AVATAR_PARTS, track_id
from kernel.revs import rev_sql
from kernel.tags import record_tags
from lexicons import ValidationError, validate_record
from projectors.album import slugify
from projectors.artist import AVATAR_URL_SQL
from projectors.base import InvalidEvent, parse_datetime

__all__ = [
    "ListDoc",
    "SearchProjector",
    "TrackDoc",
    "delete_by_did",
    "list_doc",
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
        created_at=parse_datetime(record["createdAt"], "createdAt"),
    )


def _profile_fields(envelope: Envelope) -> dict[str, str | None]:
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


def _album_key(did: str, slug: str) -> str:
    return f"{did} {slug}"


async def _claim(conn: AsyncConnection, uri: str, did: str, rev: str, deleted: bool) -> bool:
    """Record ``rev`` for ``uri``; False if an equal or newer event was already applied."""
    cur = await conn.execute(
        "INSERT INTO search_record (uri, did, rev, deleted) VALUES (%s, %s, %s, %s)"
        " ON CONFLICT (uri) DO UPDATE SET rev = excluded.rev, deleted = excluded.deleted"
        " WHERE search_record.rev < excluded.rev OR (search_record.rev = excluded.rev"
        " AND excluded.deleted AND NOT search_record.deleted)",
        (uri, did, rev, deleted),
    )
    return cur.rowcount == 1


async def _drop_memberships(conn: AsyncConnection, source_uri: str) -> set[str]:
    cur = await conn.execute(
        "DELETE FROM search_album_member WHERE source_uri = %s RETURNING album_key", (source_uri,)
    )
    return {row[0] for row in await cur.fetchall()}


async def _add_membership(
    conn: AsyncConnection,
    did: str,
    title: str,
    source_uri: str,
    kind: str,
    item_count: int,
    created_at: datetime,
    image_url: str | None,
) -> str:
    key = _album_key(did, slugify(title))
    await conn.execute(
        "INSERT INTO search_album_member (album_key, source_uri, did, kind, title, item_count,"
        " created_at, image_url) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (album_key, source_uri) DO UPDATE SET title = excluded.title,"
        " kind = excluded.kind, item_count = excluded.item_count,"
        " created_at = excluded.created_at, image_url = excluded.image_url",
        (key, source_uri, did, kind, title, item_count, created_at, image_url),
    )
    return key


# The album document is a function of its members only (never of arrival order): the
# title of its album list with the smallest AT-URI, else of its earliest track.
_REFRESH_ALBUM = """
WITH m AS (SELECT * FROM search_album_member WHERE album_key = %(key)s)
INSERT INTO search_doc (doc_type, doc_key, did, uri, title, slug, image_url, track_count,
                        created_at)
SELECT 'album', %(key)s, min(m.did),
       min(m.source_uri) FILTER (WHERE m.kind = 'list'),
       (array_agg(m.title ORDER BY m.kind <> 'list', m.created_at, m.source_uri))[1],
       %(slug)s,
       (array_agg(m.image_url ORDER BY m.created_at, m.source_uri)
            FILTER (WHERE m.image_url IS NOT NULL))[1],
       greatest(count(*) FILTER (WHERE m.kind = 'track'),
                coalesce(max(m.item_count) FILTER (WHERE m.kind = 'list'), 0)),
       min(m.created_at)
  FROM m
HAVING count(*) > 0
ON CONFLICT (doc_type, doc_key) DO UPDATE SET
    uri = excluded.uri, title = excluded.title, slug = excluded.slug,
    image_url = excluded.image_url, track_count = excluded.track_count,
    created_at = excluded.created_at
"""


async def _refresh_albums(conn: AsyncConnection, keys: set[str]) -> None:
    for key in sorted(keys):
        await conn.execute(
            "DELETE FROM search_doc WHERE doc_type = 'album' AND doc_key = %s AND NOT EXISTS"
            " (SELECT 1 FROM search_album_member WHERE album_key = %s)",
            (key, key),
        )
        await conn.execute(_REFRESH_ALBUM, {"key": key, "slug": key.split(" ", 1)[1]})


async def _refresh_artist(conn: AsyncConnection, did: str) -> None:
    await conn.execute(
        "INSERT INTO search_doc (doc_type, doc_key, did, uri, title, alt, image_url)"
        " SELECT 'artist', did, did, did,"
        "  coalesce(bsky_display_name, track_artist, handle, did), handle,"
        f"  {AVATAR_URL_SQL}"
        " FROM search_artist WHERE did = %s"
        " ON CONFLICT (doc_type, doc_key) DO UPDATE SET title = excluded.title,"
        "  alt = excluded.alt, image_url = excluded.image_url",
        (*BSKY_AVATAR_PARTS, did),
    )


async def _ensure_artist(conn: AsyncConnection, did: str) -> None:
    await conn.execute("INSERT INTO search_artist (did) VALUES (%s) ON CONFLICT DO NOTHING", (did,))


async def _upsert_track(conn: AsyncConnection, doc: TrackDoc) -> None:
    if not await _claim(conn, doc.uri, doc.did, doc.rev, False):
        return
    keys = await _drop_memberships(conn, doc.uri)
    await conn.execute(
        "INSERT INTO search_doc (doc_type, doc_key, did, uri, item_id, title, image_url,"
        " created_at) VALUES ('track', %s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (doc_type, doc_key) DO UPDATE SET title = excluded.title,"
        " image_url = excluded.image_url, created_at = excluded.created_at",
        (doc.uri, doc.did, doc.uri, track_id(doc.uri), doc.title, doc.image_url, doc.created_at),
    )
    if doc.album is not None:
        keys.add(
            await _add_membership(
                conn, doc.did, doc.album, doc.uri, "track", 0, doc.created_at, doc.image_url
            )
        )
    await conn.execute("DELETE FROM search_tag WHERE track_uri = %s", (doc.uri,))
    for tag in doc.tags:
        await conn.execute(
            "INSERT INTO search_tag (track_uri, did, tag) VALUES (%s, %s, %s)",
            (doc.uri, doc.did, tag),
        )
    await _ensure_artist(conn, doc.did)
    await conn.execute(
        "UPDATE search_artist SET track_artist = %s, track_rev = %s"
        f" WHERE did = %s AND (track_rev IS NULL OR {rev_sql('track_rev', '<=', '%s')})",
        (doc.artist, doc.rev, doc.did, doc.rev),
    )
    await _refresh_artist(conn, doc.did)
    await _refresh_albums(conn, keys)


async def _upsert_list(conn: AsyncConnection, doc: ListDoc) -> None:
    if not await _claim(conn, doc.uri, doc.did, doc.rev, False):
        return
    keys = await _drop_memberships(conn, doc.uri)
    await conn.execute(
        "DELETE FROM search_doc WHERE doc_type = 'playlist' AND doc_key = %s", (doc.uri,)
    )
    if doc.name is not None and doc.list_type == "playlist":
        await conn.execute(
            "INSERT INTO search_doc (doc_type, doc_key, did, uri, title, track_count, created_at)"
            " VALUES ('playlist', %s, %s, %s, %s, %s, %s)",
            (doc.uri, doc.did, doc.uri, doc.name, doc.item_count, doc.created_at),
        )
    elif doc.name is not None and doc.list_type == "album":
        keys.add(
            await _add_membership(
                conn, doc.did, doc.name, doc.uri, "list", doc.item_count, doc.created_at, None
            )
        )
    await _refresh_albums(conn, keys)


async def _delete_record(conn: AsyncConnection, uri: str, did: str, rev: str) -> None:
    if not await _claim(conn, uri, did, rev, True):
        return
    keys = await _drop_memberships(conn, uri)
    await conn.execute(
        "DELETE FROM search_doc WHERE doc_type IN ('track', 'playlist') AND doc_key = %s", (uri,)
    )
    await conn.execute("DELETE FROM search_tag WHERE track_uri = %s", (uri,))
    await _refresh_albums(conn, keys)


async def _apply_profile(conn: AsyncConnection, envelope: Envelope) -> None:
    uri, rev = envelope.uri, envelope.rev
    assert uri is not None and rev is not None  # checked when the envelope was parsed
    deleted = envelope.kind == "record.deleted"
    if deleted:
        fields: dict[str, str | None] = (
            {"bsky_display_name": None, "bsky_avatar_cid": None}
            if envelope.collection == BSKY_PROFILE
            else {"plyr_avatar_url": None}
        )
    else:
        fields = _profile_fields(envelope)
    if not await _claim(conn, uri, envelope.did, rev, deleted):
        return
    await _ensure_artist(conn, envelope.did)
    # Column names come from the fixed dicts above, never from the record.
    assignments = ", ".join(f"{column} = %s" for column in fields)
    await conn.execute(
        f"UPDATE search_artist SET {assignments} WHERE did = %s",
        (*fields.values(), envelope.did),
    )
    await _refresh_artist(conn, envelope.did)


async def delete_by_did(conn: AsyncConnection, did: str) -> None:
    """Purge everything search holds about a repo (account deleted)."""
    for table in ("search_doc", "search_album_member", "search_tag", "search_record"):
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
    )

    async def apply(self, conn: AsyncConnection, envelope: Envelope) -> None:
        """Apply one repo event (validation happens before any write)."""
        kind = envelope.kind
        if kind == "identity.changed":
            await _ensure_artist(conn, envelope.did)
            await conn.execute(
                "UPDATE search_artist SET handle = coalesce(%s, handle) WHERE did = %s",
                (envelope.handle, envelope.did),
            )
            await _refresh_artist(conn, envelope.did)
        elif kind == "account.changed":
            if account_status(envelope.status, envelope.active) == DELETED:
                await delete_by_did(conn, envelope.did)
        elif envelope.collection in (BSKY_PROFILE, PLYR_PROFILE):
            await _apply_profile(conn, envelope)
        elif envelope.collection in (TRACK, LIST):
            if kind == "record.deleted":
                assert envelope.uri is not None and envelope.rev is not None
                await _delete_record(conn, envelope.uri, envelope.did, envelope.rev)
            elif envelope.collection == TRACK:
                await _upsert_track(conn, track_doc(envelope))
            else:
                await _upsert_list(conn, list_doc(envelope))
