"""Network scrobbles in the plays read model: match a scrobble to one of our tracks.

A scrobble (``fm.teal.feed.play`` or ``fm.teal.alpha.feed.play`` of any repo, put on the
``plays`` topic by ingest as a ``record.*`` event keyed by the listener; see
:mod:`kernel.plays`) counts as a play of one of our tracks, with source ``network``, when
:func:`choose_track` finds it:

1. its ``originUri`` is one of our track pages (``PLYR_FRONTEND_URL/track/{id}``,
   :func:`kernel.plays.origin_track_id`) of a visible track; else
2. its track name and one of its artist names match exactly one visible track: the title,
   and the track's ``artist`` field, the artist's display name or handle, compared after
   Unicode NFC and case folding. Two or more such tracks (ambiguous) or none: no match.

"Visible" is the moderation decision of a permalink (``plyr_visible(…, 'detail', true)``):
a taken-down track, or one of a deactivated or deleted account, is never matched.

**Matching happens when the scrobble is projected**, against the catalog's ``track`` and
``artist`` tables and moderation's tables in the same database, so a matched play is a
``play`` row like any other and every count (hourly, listeners, totals, charts) includes
it with no query-time join. The price: the result depends on the catalog at that moment.
A scrobble of a track the catalog has not projected yet is unmatched (counted, not stored),
and **a plays rebuild must run after the catalog (and moderation) is built**, or scrobbles
replayed against an empty catalog all come out unmatched. Matching at query time instead
would mean storing every unmatched scrobble of the network (most of teal's traffic is not
ours) and joining them on every read; we chose storage only for what counts.

Matched scrobbles go through the same qualification (:func:`projectors.plays_qualify.qualify`)
as API reports, listener = the scrobbling DID, play id = the scrobble's AT-URI, time = its
``playedTime`` (no later than the commit). They are decided by this projector in both log
modes: the Kafka-mode stream worker has no catalog to match against.

A delete of the scrobble record removes its play and takes it out of every count
(:func:`remove_plays`); an update is a delete then a new scrobble. Unmatched scrobbles
are counted in ``play_scrobble_counter`` (``plyr-appview status`` prints it,
:func:`scrobble_status`). Schema: ``migrations/0016_scrobbles.sql``.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from psycopg import AsyncConnection

from kernel.envelope import Envelope
from kernel.plays import (
    NETWORK_SOURCE,
    SCROBBLE_COLLECTIONS,
    Scrobble,
    ScrobbleError,
    origin_track_id,
    parse_scrobble,
)
from projectors.base import InvalidEvent, parse_datetime
from projectors.plays_qualify import PlayReport

__all__ = [
    "Candidate",
    "ScrobbleItem",
    "choose_track",
    "count_scrobbles",
    "find_candidates",
    "is_scrobble",
    "remove_plays",
    "scrobble_item",
    "scrobble_report",
    "scrobble_status",
]

_MAX_ID = 512


def is_scrobble(envelope: Envelope) -> bool:
    """Whether a plays-topic event is a scrobble record op."""
    return envelope.collection in SCROBBLE_COLLECTIONS and envelope.kind.startswith("record.")


@dataclass(frozen=True, slots=True)
class ScrobbleItem:
    """One scrobble record op, parsed: a new scrobble, an update, or a delete."""

    play_id: str
    listener: str
    at: datetime
    """When it was played: ``playedTime``, but no later than the commit (``time``)."""
    scrobble: Scrobble | None
    """None for a delete."""
    replaces: bool
    """An update or a delete: any play of this id is removed first."""


def scrobble_item(envelope: Envelope) -> ScrobbleItem:
    """Pure: the :class:`ScrobbleItem` of a scrobble event; :class:`InvalidEvent` if bad."""
    uri = envelope.uri
    if uri is None or len(uri) > _MAX_ID or not envelope.did.startswith("did:"):
        raise InvalidEvent("scrobble: expected the listener's DID, collection and rkey")
    committed = parse_datetime(envelope.time, "time")
    if envelope.kind == "record.deleted":
        return ScrobbleItem(uri, envelope.did, committed, None, True)
    try:
        scrobble = parse_scrobble(envelope.record or {})
    except ScrobbleError as exc:
        raise InvalidEvent(f"scrobble: {exc}") from None
    at = committed
    if scrobble.played_time is not None:
        at = min(committed, parse_datetime(scrobble.played_time, "play.played_time"))
    return ScrobbleItem(uri, envelope.did, at, scrobble, envelope.kind == "record.updated")


@dataclass(frozen=True, slots=True)
class Candidate:
    """A track that may be the one a scrobble names, with what matching compares."""

    uri: str
    did: str
    id: int
    title: str
    artist: str
    display_name: str | None
    handle: str | None
    duration_s: int | None
    visible: bool


def _fold(text: str) -> str:
    return unicodedata.normalize("NFC", text).casefold()


def choose_track(
    scrobble: Scrobble, candidates: Sequence[Candidate], frontend_url: str
) -> Candidate | None:
    """Pure: the one visible track ``scrobble`` names among ``candidates``, or None.

    See the module docstring for the rule; ``candidates`` may hold any tracks (those
    :func:`find_candidates` returns are the only ones that can match).
    """
    visible = [c for c in candidates if c.visible]
    if scrobble.origin_uri is not None:
        wanted = origin_track_id(scrobble.origin_uri, frontend_url)
        if wanted is not None:
            for candidate in visible:
                if candidate.id == wanted:
                    return candidate
    artists = {_fold(name) for name in scrobble.artist_names}
    if not artists:
        return None
    title = _fold(scrobble.track_name)
    hits = [
        c
        for c in visible
        if _fold(c.title) == title
        and artists & {_fold(n) for n in (c.artist, c.display_name, c.handle) if n}
    ]
    return hits[0] if len(hits) == 1 else None


_CANDIDATES = (
    "SELECT t.uri, t.did, t.id, t.title, t.artist, a.display_name, a.handle, t.duration,"
    " plyr_visible(t.uri, t.did, 'detail', true)"
    " FROM track t LEFT JOIN artist a ON a.did = t.did"
    " WHERE t.id = %s OR lower(t.title) = lower(%s) LIMIT 50"
)


async def find_candidates(
    conn: AsyncConnection, scrobble: Scrobble, frontend_url: str
) -> list[Candidate]:
    """The tracks :func:`choose_track` looks at: the ``originUri``'s, and the same titles."""
    wanted = None
    if scrobble.origin_uri is not None:
        wanted = origin_track_id(scrobble.origin_uri, frontend_url)
    cur = await conn.execute(
        _CANDIDATES, (wanted if wanted is not None else -1, scrobble.track_name)
    )
    return [Candidate(*row) for row in await cur.fetchall()]


def scrobble_report(item: ScrobbleItem, track: Candidate) -> PlayReport:
    """Pure: the play report of a matched scrobble (the catalog's duration first)."""
    assert item.scrobble is not None
    duration = track.duration_s if track.duration_s is not None else item.scrobble.duration_s
    return PlayReport(
        play_id=item.play_id,
        listener=item.listener,
        track_uri=track.uri,
        artist_did=track.did,
        at=item.at,
        duration_s=duration,
        source=NETWORK_SOURCE,
    )


def _hour(when: datetime) -> datetime:
    return when.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def _day(when: datetime) -> date:
    return when.astimezone(UTC).date()


async def remove_plays(conn: AsyncConnection, play_ids: Sequence[str]) -> int:
    """Delete the plays of ``play_ids`` and take them out of every count; returns how many.

    Shared rows are changed in key order (as :func:`projectors.plays.insert_plays` does),
    so concurrent partitions wait rather than deadlock. A bucket or total that falls to
    zero is deleted (a rebuild of the same log never creates it).
    """
    if not play_ids:
        return 0
    cur = await conn.execute(
        "DELETE FROM play WHERE play_id = ANY(%s)"
        " RETURNING listener, track_uri, did, played_at, self_play",
        (sorted(set(play_ids)),),
    )
    removed: list[tuple[Any, ...]] = list(await cur.fetchall())
    if not removed:
        return 0
    hourly: dict[tuple[str, datetime], list[int]] = {}
    tracks: dict[str, list[int]] = {}
    artists: dict[str, list[int]] = {}
    days: set[tuple[str, str, str, date]] = set()
    for listener, track_uri, did, played_at, self_play in removed:
        for counts in (
            hourly.setdefault((track_uri, _hour(played_at)), [0, 0]),
            tracks.setdefault(track_uri, [0, 0]),
            artists.setdefault(did, [0, 0]),
        ):
            counts[0] += 1
            counts[1] += int(self_play)
        days.add((did, track_uri, listener, _day(played_at)))
    for (track_uri, hour), (n, s) in sorted(hourly.items()):
        await conn.execute(
            "UPDATE play_hourly SET plays = plays - %s, self_plays = self_plays - %s"
            " WHERE track_uri = %s AND hour = %s",
            (n, s, track_uri, hour),
        )
    for track_uri, day_listener in sorted({(t, (d, li)) for _, t, li, d in days}):
        day, listener = day_listener
        await conn.execute(
            "DELETE FROM play_track_listener_day WHERE track_uri = %s AND day = %s"
            " AND listener = %s AND NOT EXISTS (SELECT 1 FROM play WHERE listener = %s"
            " AND track_uri = %s AND played_at >= %s::date AND played_at < %s::date + 1)",
            (track_uri, day, listener, listener, track_uri, day, day),
        )
    for did, day, listener in sorted({(d, dy, li) for d, _, li, dy in days}):
        await conn.execute(
            "DELETE FROM play_artist_listener_day WHERE did = %s AND day = %s"
            " AND listener = %s AND NOT EXISTS (SELECT 1 FROM play WHERE listener = %s"
            " AND did = %s AND played_at >= %s::date AND played_at < %s::date + 1)",
            (did, day, listener, listener, did, day, day),
        )
    for track_uri, (n, s) in sorted(tracks.items()):
        await conn.execute(
            "UPDATE play_track_total SET plays = plays - %s, self_plays = self_plays - %s"
            " WHERE track_uri = %s",
            (n, s, track_uri),
        )
    for did, (n, s) in sorted(artists.items()):
        await conn.execute(
            "UPDATE play_artist_total SET plays = plays - %s, self_plays = self_plays - %s"
            " WHERE did = %s",
            (n, s, did),
        )
    await conn.execute(
        "DELETE FROM play_hourly WHERE track_uri = ANY(%s) AND plays <= 0", (sorted(tracks),)
    )
    await conn.execute(
        "DELETE FROM play_track_total WHERE track_uri = ANY(%s) AND plays <= 0", (sorted(tracks),)
    )
    await conn.execute(
        "DELETE FROM play_artist_total WHERE did = ANY(%s) AND plays <= 0", (sorted(artists),)
    )
    return len(removed)


async def count_scrobbles(conn: AsyncConnection, counts: dict[str, int]) -> None:
    """Add ``counts`` (``matched``, ``unmatched``, ``removed``) to ``play_scrobble_counter``."""
    rows = sorted((name, value) for name, value in counts.items() if value)
    if not rows:
        return
    await conn.execute(
        "INSERT INTO play_scrobble_counter AS c (name, value)"
        " SELECT * FROM unnest(%s::text[], %s::bigint[]) ORDER BY 1"
        " ON CONFLICT (name) DO UPDATE SET value = c.value + excluded.value",
        ([r[0] for r in rows], [r[1] for r in rows]),
    )


async def scrobble_status(conn: AsyncConnection) -> str:
    """One line for ``plyr-appview status``: scrobbles matched, unmatched, removed."""
    cur = await conn.execute("SELECT name, value FROM play_scrobble_counter")
    values = {name: int(value) for name, value in await cur.fetchall()}
    return (
        f"  scrobbles: matched={values.get('matched', 0)}"
        f" unmatched={values.get('unmatched', 0)} removed={values.get('removed', 0)}"
    )
