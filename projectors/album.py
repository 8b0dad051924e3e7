"""The ``album`` read model, derived from ``track`` and ``list`` rows (no records of its own).

An artist's albums come from their ``fm.plyr.list`` records of type ``album`` (title =
list name, order = list items) and from the ``album`` title of their tracks. Albums are
recomputed per artist from the stored rows after every batch that changed the artist's
tracks or lists, so the result never depends on the order events arrived in.

Slug rule (:func:`slugify`): NFKD-normalize, drop combining marks (``é`` → ``e``),
lower-case, keep letters and digits of any script (so CJK titles keep their characters),
turn every other run of characters into one ``-``, trim ``-`` at both ends, cut to 80
characters. A title with no letters or digits (``"!!!"``) gets ``album-`` plus 8 hex
digits of the title's SHA-256. Collisions: titles with the same slug for the same artist
("Rock!" and "rock") are one album. Its title is the name of its album list (the one with
the smallest AT-URI if several), else the album title of its earliest track (by
``created_at``, then AT-URI). A track belongs to the album of its ``album`` title; a track
without one belongs to the album of the first album list (smallest AT-URI) of the same
artist that lists it. ``album.id`` is :func:`kernel.ids.album_id`.
"""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection

from kernel.ids import album_id
from projectors.records import to_json

__all__ = [
    "AlbumList",
    "AlbumTrack",
    "delete_by_did",
    "derive",
    "refresh_albums",
    "slugify",
]

_MAX_SLUG = 80
# A list row (``l``) that makes an album.
_ALBUM_LIST = "l.list_type = 'album' AND coalesce(l.name, '') <> ''"


def slugify(title: str) -> str:
    """The URL slug of an album title (see the module docstring for the rule)."""
    decomposed = unicodedata.normalize("NFKD", title)
    out: list[str] = []
    dash = False
    for char in decomposed:
        if unicodedata.combining(char):
            continue
        if char.isalnum():
            if dash and out:
                out.append("-")
            out.append(char.lower())
            dash = False
        else:
            dash = True
    slug = "".join(out)[:_MAX_SLUG].strip("-")
    if not slug:
        slug = "album-" + hashlib.sha256(title.encode()).hexdigest()[:8]
    return slug


@dataclass(frozen=True, slots=True)
class AlbumTrack:
    """What album derivation needs of a track row."""

    uri: str
    album: str | None
    created_at: datetime
    image_url: str | None


@dataclass(frozen=True, slots=True)
class AlbumList:
    """What album derivation needs of an album list row."""

    uri: str
    name: str
    created_at: datetime
    updated_at: datetime | None
    items: tuple[str, ...]


def derive(
    did: str, tracks: Sequence[AlbumTrack], lists: Sequence[AlbumList]
) -> tuple[list[dict[str, Any]], dict[str, str | None]]:
    """An artist's album rows and each track's album slug; pure and order-independent."""
    tracks = sorted(tracks, key=lambda t: (t.created_at, t.uri))
    lists = sorted(lists, key=lambda entry: entry.uri)
    # An artist has many tracks but few album titles: slugify each title once.
    known: dict[str, str] = {}

    def slug_of(title: str) -> str:
        slug = known.get(title)
        if slug is None:
            slug = known[title] = slugify(title)
        return slug

    list_of_slug: dict[str, AlbumList] = {}
    for candidate in lists:
        list_of_slug.setdefault(slug_of(candidate.name), candidate)
    first_list_of_track: dict[str, str] = {}
    for slug, listed in sorted(list_of_slug.items(), key=lambda kv: kv[1].uri):
        for item in listed.items:
            first_list_of_track.setdefault(item, slug)
    slugs: dict[str, str | None] = {}
    title_of_slug: dict[str, str] = {}
    for track in tracks:
        if track.album:
            slug = slugs[track.uri] = slug_of(track.album)
            title_of_slug.setdefault(slug, track.album)
        else:
            slugs[track.uri] = first_list_of_track.get(track.uri)
    albums: list[dict[str, Any]] = []
    for slug in sorted(set(title_of_slug) | set(list_of_slug)):
        entry = list_of_slug.get(slug)
        members = [t for t in tracks if slugs[t.uri] == slug]
        if entry is not None:
            position = {uri: i for i, uri in enumerate(entry.items)}
            members.sort(key=lambda t: (position.get(t.uri, len(position)), t.created_at, t.uri))
        times = [t.created_at for t in members]
        if entry is not None:
            times += [entry.created_at] + ([entry.updated_at] if entry.updated_at else [])
        albums.append(
            {
                "did": did,
                "slug": slug,
                "id": str(album_id(did, slug)),
                "title": entry.name if entry is not None else title_of_slug[slug],
                "list_uri": entry.uri if entry is not None else None,
                "image_url": next((t.image_url for t in members if t.image_url), None),
                "track_count": len(members),
                "created_at": min(times).isoformat(),
                "updated_at": max(times).isoformat(),
            }
        )
    return albums, slugs


async def refresh_albums(conn: AsyncConnection, dids: Sequence[str]) -> None:
    """Recompute the albums of ``dids`` from their stored tracks and album lists."""
    if not dids:
        return
    dids = sorted(set(dids))
    # Only the tracks an album can involve: with an album title, on an album list of
    # their artist, or holding a slug to clear. Derivation gives every other track no
    # slug and no album, and it has none: reading them (most tracks) would change nothing.
    cur = await conn.execute(
        "SELECT t.did, t.uri, t.album, t.created_at, t.image_url, t.album_slug FROM track t"
        " WHERE t.did = ANY(%b::text[]) AND (t.album IS NOT NULL OR t.album_slug IS NOT NULL"
        "  OR EXISTS (SELECT 1 FROM list_item i JOIN list l ON l.uri = i.list_uri"
        f"   WHERE i.subject_uri = t.uri AND l.did = t.did AND {_ALBUM_LIST}))",
        (dids,),
    )
    tracks: dict[str, list[AlbumTrack]] = {}
    current_slug: dict[str, str | None] = {}
    for did, uri, title, created, image, slug in await cur.fetchall():
        tracks.setdefault(did, []).append(AlbumTrack(uri, title, created, image))
        current_slug[uri] = slug
    cur = await conn.execute(
        "SELECT l.did, l.uri, l.name, l.created_at, l.updated_at,"
        " coalesce(array_agg(i.subject_uri ORDER BY i.position)"
        "  FILTER (WHERE i.subject_uri IS NOT NULL), '{}')"
        " FROM list l LEFT JOIN list_item i ON i.list_uri = l.uri"
        f" WHERE l.did = ANY(%b::text[]) AND {_ALBUM_LIST}"
        " GROUP BY l.uri",
        (dids,),
    )
    lists: dict[str, list[AlbumList]] = {}
    for did, uri, name, created, updated, items in await cur.fetchall():
        lists.setdefault(did, []).append(AlbumList(uri, name, created, updated, tuple(items)))
    rows: list[dict[str, Any]] = []
    changed: list[dict[str, Any]] = []
    for did in dids:
        albums, slugs = derive(did, tracks.get(did, []), lists.get(did, []))
        rows += albums
        changed += [
            {"uri": uri, "slug": slug}
            for uri, slug in slugs.items()
            if current_slug.get(uri) != slug
        ]
    # The kept keys as two arrays: a hash anti-join (a recordset here was re-read per row).
    await conn.execute(
        "DELETE FROM album a WHERE a.did = ANY(%b::text[]) AND NOT EXISTS ("
        " SELECT 1 FROM unnest(%b::text[], %b::text[]) AS x(did, slug)"
        " WHERE x.did = a.did AND x.slug = a.slug)",
        (dids, [r["did"] for r in rows], [r["slug"] for r in rows]),
    )
    if rows:
        columns = ("did", "slug", "id", "title", "list_uri", "image_url", "track_count",
                   "created_at", "updated_at")  # fmt: skip
        types = ("text", "text", "uuid", "text", "text", "text", "integer", "timestamptz",
                 "timestamptz")  # fmt: skip
        spec = ", ".join(f"{c} {t}" for c, t in zip(columns, types, strict=True))
        names = ", ".join(columns)
        updates = ", ".join(f"{c} = excluded.{c}" for c in columns[3:])
        await conn.execute(
            f"INSERT INTO album ({names}) SELECT {names} FROM jsonb_to_recordset(%s::jsonb)"
            f" AS x({spec}) ON CONFLICT (did, slug) DO UPDATE SET {updates}"
            f" WHERE ({', '.join('album.' + c for c in columns[3:])})"
            f" IS DISTINCT FROM ({', '.join('excluded.' + c for c in columns[3:])})",
            (to_json(rows),),
        )
    if changed:
        await conn.execute(
            "UPDATE track SET album_slug = x.slug FROM jsonb_to_recordset(%s::jsonb)"
            " AS x(uri text, slug text) WHERE track.uri = x.uri",
            (to_json(sorted(changed, key=lambda c: str(c["uri"]))),),
        )


async def delete_by_did(conn: AsyncConnection, did: str) -> None:
    """Remove every album of a repo."""
    await conn.execute("DELETE FROM album WHERE did = %s", (did,))
