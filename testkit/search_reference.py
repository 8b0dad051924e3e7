"""The search projector as it was before it applied batches: one event at a time.

Kept only as the reference its batch twin (:class:`projectors.search.SearchProjector`) is
held to: ``tests/integration/test_search_batch_agreement.py`` feeds both the same events and
compares every search table, and ``bench/bench_projectors_rebuild.py`` (``BENCH_PROJECTOR=
search``) measures both in the same run. It shares the pure parts (documents, the record
table) with the product and keeps the per-event writes: a savepoint and several statements
per event, albums and the artist document re-derived after each.
"""

from __future__ import annotations

from datetime import datetime

from psycopg import AsyncConnection

from kernel.account import DELETED, account_status
from kernel.envelope import Envelope
from kernel.identity import INVALID_HANDLE
from kernel.ids import BSKY_AVATAR_PARTS, track_id
from kernel.revs import rev_sql
from projectors import album
from projectors.album import AlbumList, AlbumTrack, slugify
from projectors.artist import AVATAR_URL_SQL
from projectors.records import Rows, deletion
from projectors.search import (
    BSKY_PROFILE,
    LIST,
    PLYR_PROFILE,
    RECORDS,
    TRACK,
    ListDoc,
    SearchProjector,
    TrackDoc,
    album_key,
    delete_by_did,
    list_doc,
    profile_fields,
    track_doc,
)

__all__ = ["PerEventSearchProjector"]


async def _claim(conn: AsyncConnection, uri: str, did: str, rev: str) -> bool:
    """Record a write of ``uri`` at ``rev``; False if a newer write or a delete won."""
    written, _ = await RECORDS.upsert(conn, Rows.of([{"uri": uri, "did": did, "rev": rev}]))
    return bool(written)


async def _claim_delete(conn: AsyncConnection, envelope: Envelope) -> bool:
    """Record a delete (tombstone); False if the record is stored at a newer rev."""
    await RECORDS.delete(conn, Rows.of([deletion(envelope).as_json()]))
    cur = await conn.execute("SELECT 1 FROM search_record WHERE uri = %s", (envelope.uri,))
    return await cur.fetchone() is None


async def _set_membership(
    conn: AsyncConnection,
    source_uri: str,
    member: tuple[str, str, str, int, datetime, str | None, list[str]] | None,
) -> bool:
    """Replace what ``source_uri`` contributes to its artist's albums (``None``: nothing).

    ``member``: DID, title, kind (``track`` or ``list``), item count, created_at, image
    URL, list items. Returns whether it contributes or contributed anything.
    """
    cur = await conn.execute("DELETE FROM search_album_member WHERE source_uri = %s", (source_uri,))
    if member is None:
        return cur.rowcount > 0
    did, title, kind, item_count, created_at, image_url, items = member
    await conn.execute(
        "INSERT INTO search_album_member (album_key, source_uri, did, kind, title, item_count,"
        " created_at, image_url, items) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            album_key(did, slugify(title)),
            source_uri,
            did,
            kind,
            title,
            item_count,
            created_at,
            image_url,
            items,
        ),
    )
    return True


async def _listed(conn: AsyncConnection, did: str, uri: str) -> bool:
    """Whether an album list of ``did`` names the track ``uri`` (it may be on the album)."""
    cur = await conn.execute(
        "SELECT 1 FROM search_album_member WHERE did = %s AND kind = 'list' AND %s = ANY(items)"
        " LIMIT 1",
        (did, uri),
    )
    return await cur.fetchone() is not None


async def _refresh_albums(conn: AsyncConnection, did: str) -> None:
    """Recompute the artist's album documents by the catalog's rule (:func:`album.derive`).

    Inputs: the artist's album lists and titled tracks (``search_album_member``), and the
    track documents of the untitled tracks those lists name.
    """
    cur = await conn.execute(
        "SELECT source_uri, kind, title, created_at, image_url, items FROM search_album_member"
        " WHERE did = %s",
        (did,),
    )
    tracks: dict[str, AlbumTrack] = {}
    lists: list[AlbumList] = []
    for uri, kind, title, created_at, image_url, items in await cur.fetchall():
        if kind == "track":
            tracks[uri] = AlbumTrack(uri, title, created_at, image_url)
        else:
            lists.append(AlbumList(uri, title, created_at, None, tuple(items)))
    listed = sorted({item for entry in lists for item in entry.items} - tracks.keys())
    if listed:
        cur = await conn.execute(
            "SELECT doc_key, created_at, image_url FROM search_doc"
            " WHERE doc_type = 'track' AND doc_key = ANY(%s) AND did = %s",
            (listed, did),
        )
        for uri, created_at, image_url in await cur.fetchall():
            tracks[uri] = AlbumTrack(uri, None, created_at, image_url)
    albums, _ = album.derive(did, list(tracks.values()), lists)
    keys = [album_key(did, row["slug"]) for row in albums]
    await conn.execute(
        "DELETE FROM search_doc WHERE doc_type = 'album' AND did = %s AND doc_key <> ALL(%s)",
        (did, keys),
    )
    for key, row in zip(keys, albums, strict=True):
        await conn.execute(
            "INSERT INTO search_doc (doc_type, doc_key, did, uri, title, slug, image_url,"
            " track_count, created_at) VALUES ('album', %s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (doc_type, doc_key) DO UPDATE SET uri = excluded.uri,"
            " title = excluded.title, slug = excluded.slug, image_url = excluded.image_url,"
            " track_count = excluded.track_count, created_at = excluded.created_at",
            (
                key,
                did,
                row["list_uri"],
                row["title"],
                row["slug"],
                row["image_url"],
                row["track_count"],
                row["created_at"],
            ),
        )


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
    if not await _claim(conn, doc.uri, doc.did, doc.rev):
        return
    await conn.execute(
        "INSERT INTO search_doc (doc_type, doc_key, did, uri, item_id, title, image_url,"
        " created_at) VALUES ('track', %s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (doc_type, doc_key) DO UPDATE SET title = excluded.title,"
        " image_url = excluded.image_url, created_at = excluded.created_at",
        (doc.uri, doc.did, doc.uri, track_id(doc.uri), doc.title, doc.image_url, doc.created_at),
    )
    # Albums change only for a track on one (by its title or an album list) or leaving one.
    albums = await _set_membership(
        conn,
        doc.uri,
        None
        if doc.album is None
        else (doc.did, doc.album, "track", 0, doc.created_at, doc.image_url, []),
    )
    albums = albums or await _listed(conn, doc.did, doc.uri)
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
    if albums:
        await _refresh_albums(conn, doc.did)


async def _upsert_list(conn: AsyncConnection, doc: ListDoc) -> None:
    if not await _claim(conn, doc.uri, doc.did, doc.rev):
        return
    await conn.execute(
        "DELETE FROM search_doc WHERE doc_type = 'playlist' AND doc_key = %s", (doc.uri,)
    )
    member = None
    if doc.name is not None and doc.list_type == "playlist":
        await conn.execute(
            "INSERT INTO search_doc (doc_type, doc_key, did, uri, title, track_count, created_at)"
            " VALUES ('playlist', %s, %s, %s, %s, %s, %s)",
            (doc.uri, doc.did, doc.uri, doc.name, doc.item_count, doc.created_at),
        )
    elif doc.name is not None and doc.list_type == "album":
        member = (doc.did, doc.name, "list", doc.item_count, doc.created_at, None, doc.items)
    if await _set_membership(conn, doc.uri, member):
        await _refresh_albums(conn, doc.did)


async def _delete_record(conn: AsyncConnection, envelope: Envelope) -> None:
    uri = envelope.uri
    assert uri is not None  # checked when the envelope was parsed
    if not await _claim_delete(conn, envelope):
        return
    albums = await _set_membership(conn, uri, None) or await _listed(conn, envelope.did, uri)
    await conn.execute(
        "DELETE FROM search_doc WHERE doc_type IN ('track', 'playlist') AND doc_key = %s", (uri,)
    )
    await conn.execute("DELETE FROM search_tag WHERE track_uri = %s", (uri,))
    if albums:
        await _refresh_albums(conn, envelope.did)


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
        fields = profile_fields(envelope)
    if not await (
        _claim_delete(conn, envelope) if deleted else _claim(conn, uri, envelope.did, rev)
    ):
        return
    await _ensure_artist(conn, envelope.did)
    # Column names come from the fixed dicts above, never from the record.
    assignments = ", ".join(f"{column} = %s" for column in fields)
    await conn.execute(
        f"UPDATE search_artist SET {assignments} WHERE did = %s",
        (*fields.values(), envelope.did),
    )
    await _refresh_artist(conn, envelope.did)


class PerEventSearchProjector:
    """The search projector of one event at a time (the reference; see the module)."""

    name = SearchProjector.name
    tables = SearchProjector.tables

    async def apply(self, conn: AsyncConnection, envelope: Envelope) -> None:
        """Apply one repo event (validation happens before any write)."""
        kind = envelope.kind
        if kind == "identity.changed":
            await _ensure_artist(conn, envelope.did)
            await conn.execute(
                # An unverified handle is no handle to search by (nor a name to show).
                "UPDATE search_artist SET handle = CASE WHEN %s = %s THEN NULL"
                " ELSE coalesce(%s, handle) END WHERE did = %s",
                (envelope.handle, INVALID_HANDLE, envelope.handle, envelope.did),
            )
            await _refresh_artist(conn, envelope.did)
        elif kind == "account.changed":
            if account_status(envelope.status, envelope.active) == DELETED:
                await delete_by_did(conn, envelope.did)
        elif envelope.collection in (BSKY_PROFILE, PLYR_PROFILE):
            await _apply_profile(conn, envelope)
        elif envelope.collection in (TRACK, LIST):
            if kind == "record.deleted":
                await _delete_record(conn, envelope)
            elif envelope.collection == TRACK:
                await _upsert_track(conn, track_doc(envelope))
            else:
                await _upsert_list(conn, list_doc(envelope))
