"""The ``plays`` read model: counted plays and their counts (``plays`` topic).

Embedded mode: ``play.reported`` events are qualified here, by the same pure function the
Kafka-mode stream worker runs (:func:`projectors.plays_qualify.qualify`), with its state
(the counted windows of a listener and track) read from the ``play`` table inside the
runner's transaction, so the decision, the rows and the partition offset commit together:
each report is decided exactly once. The plays topic is keyed by listener, so all reports
of one listener and track are in one partition and decided in log order.

``play.counted`` events (written by the stream worker in Kafka mode) are stored as they
are; with ``qualify_reports=False`` (Kafka mode) reports are left to the stream worker.

Every count follows the insert of the ``play`` row (keyed by play id): only plays whose
row is new in this transaction add to the hourly buckets, the daily listener sets and the
totals, so a replayed or duplicated event changes nothing. Totals are incremented rather
than recounted (STYLE prefers recounts): recounting a hit track's plays on every batch costs
O(plays), and the increment is exactly as idempotent as the row it follows. Partitions are
written concurrently and share those rows, so every writer locks them in one order.
Schema: ``migrations/0013_plays.sql``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any

from psycopg import AsyncConnection

from kernel.envelope import Envelope
from projectors.base import InvalidEvent, parse_datetime
from projectors.plays_qualify import (
    LATENESS,
    CountedPlay,
    PlayReport,
    Window,
    qualify,
)

__all__ = [
    "PlayItem",
    "PlaysProjector",
    "counted_play",
    "decide_batch",
    "insert_plays",
    "load_states",
    "play_report",
]

logger = logging.getLogger(__name__)

_MAX_ID = 128
_MAX_LISTENER = 256
_MAX_DURATION = 7 * 24 * 3600


def _play_fields(envelope: Envelope) -> tuple[str, str, str]:
    """``(play id, listener, track URI)`` of a play event; :class:`InvalidEvent` if bad."""
    play = envelope.play
    uri = envelope.uri
    if play is None or uri is None:
        raise InvalidEvent(f"{envelope.kind} without play or track")
    play_id, listener = play.get("id"), play.get("listener")
    if not isinstance(play_id, str) or not 0 < len(play_id) <= _MAX_ID:
        raise InvalidEvent(f"play.id: expected 1 to {_MAX_ID} characters")
    if not isinstance(listener, str) or not 0 < len(listener) <= _MAX_LISTENER:
        raise InvalidEvent(f"play.listener: expected 1 to {_MAX_LISTENER} characters")
    if not envelope.did.startswith("did:"):
        raise InvalidEvent("did: expected the track's DID")
    return play_id, listener, uri


def play_report(envelope: Envelope) -> PlayReport:
    """The :class:`PlayReport` of a ``play.reported`` event; :class:`InvalidEvent` if bad."""
    play_id, listener, uri = _play_fields(envelope)
    assert envelope.play is not None
    duration = envelope.play.get("duration")
    if duration is not None and (
        not isinstance(duration, int) or isinstance(duration, bool) or abs(duration) > _MAX_DURATION
    ):
        raise InvalidEvent("play.duration: expected whole seconds")
    return PlayReport(
        play_id=play_id,
        listener=listener,
        track_uri=uri,
        artist_did=envelope.did,
        at=parse_datetime(envelope.time, "time"),
        duration_s=duration,
        source=envelope.source,
    )


def counted_play(envelope: Envelope) -> CountedPlay:
    """The :class:`CountedPlay` of a ``play.counted`` event; :class:`InvalidEvent` if bad."""
    play_id, listener, uri = _play_fields(envelope)
    assert envelope.play is not None
    self_play = envelope.play.get("self")
    if not isinstance(self_play, bool):
        raise InvalidEvent("play.self: expected a boolean")
    at = parse_datetime(envelope.time, "time")
    window_end = parse_datetime(envelope.play.get("window_end"), "play.window_end")
    if window_end <= at:
        raise InvalidEvent("play.window_end: must be after the play")
    return CountedPlay(
        play_id=play_id,
        listener=listener,
        track_uri=uri,
        artist_did=envelope.did,
        at=at,
        window_end=window_end,
        self_play=self_play,
        source=envelope.source,
    )


PlayItem = PlayReport | CountedPlay
"""A parsed plays-topic event: a report to qualify, or a play already counted."""


async def load_states(
    conn: AsyncConnection, pairs: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], tuple[Window, ...]]:
    """The counted windows :func:`qualify` still looks at, per ``(listener, track URI)``."""
    if not pairs:
        return {}
    cur = await conn.execute(
        "SELECT p.listener, p.track_uri, w.played_at, w.window_end, w.play_id"
        " FROM unnest(%s::text[], %s::text[]) AS p(listener, track_uri)"
        " JOIN LATERAL (SELECT played_at, window_end, play_id FROM play"
        "  WHERE listener = p.listener AND track_uri = p.track_uri AND window_end > ("
        "   SELECT max(played_at) FROM play"
        "    WHERE listener = p.listener AND track_uri = p.track_uri) - %s) w ON true",
        ([p[0] for p in pairs], [p[1] for p in pairs], LATENESS),
    )
    states: dict[tuple[str, str], list[Window]] = {}
    for listener, uri, start, end, play_id in await cur.fetchall():
        states.setdefault((listener, uri), []).append(Window(start, end, play_id))
    return {pair: tuple(windows) for pair, windows in states.items()}


def decide_batch(
    items: Sequence[PlayItem], states: dict[tuple[str, str], tuple[Window, ...]]
) -> list[CountedPlay]:
    """Pure: the plays of a batch that count, in order (``states`` is updated in place).

    Reports go through :func:`qualify` one by one, each seeing the plays counted before it
    in the batch; counted plays are taken as they are (and join the state).
    """
    plays: list[CountedPlay] = []
    for item in items:
        pair = (item.listener, item.track_uri)
        state = states.get(pair, ())
        if isinstance(item, PlayReport):
            state, play, _ = qualify(state, item)
            if play is None:
                continue
        else:
            play = item
            if all(w.play_id != play.play_id for w in state):
                state = (*state, Window(play.at, play.window_end, play.play_id))
        states[pair] = state
        plays.append(play)
    return plays


def _hour(when: datetime) -> datetime:
    return when.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def _day(when: datetime) -> date:
    return when.astimezone(UTC).date()


def _columns(rows: Sequence[tuple[Any, ...]], width: int) -> list[list[Any]]:
    """Rows sorted by their key (the leading columns) as column arrays for ``unnest``."""
    ordered = sorted(rows)
    return [[r[i] for r in ordered] for i in range(width)]


# Shared rows (buckets, totals) are locked in one order by every writer, table by table and
# by key within each (INSERT ... SELECT ... ORDER BY), so partitions written concurrently
# wait for each other instead of deadlocking.
_UPSERT_HOURLY = (
    "INSERT INTO play_hourly AS h (track_uri, hour, did, plays, self_plays)"
    " SELECT * FROM unnest(%s::text[], %s::timestamptz[], %s::text[], %s::int[], %s::int[])"
    " ORDER BY 1, 2"
    " ON CONFLICT (track_uri, hour) DO UPDATE"
    " SET plays = h.plays + excluded.plays, self_plays = h.self_plays + excluded.self_plays"
)
_INSERT_TRACK_DAY = (
    "INSERT INTO play_track_listener_day (track_uri, day, listener, did)"
    " SELECT * FROM unnest(%s::text[], %s::date[], %s::text[], %s::text[]) ORDER BY 1, 2, 3"
    " ON CONFLICT DO NOTHING"
)
_INSERT_ARTIST_DAY = (
    "INSERT INTO play_artist_listener_day (did, day, listener)"
    " SELECT * FROM unnest(%s::text[], %s::date[], %s::text[]) ORDER BY 1, 2, 3"
    " ON CONFLICT DO NOTHING"
)
_UPSERT_TRACK_TOTAL = (
    "INSERT INTO play_track_total AS t (track_uri, did, plays, self_plays)"
    " SELECT * FROM unnest(%s::text[], %s::text[], %s::bigint[], %s::bigint[]) ORDER BY 1"
    " ON CONFLICT (track_uri) DO UPDATE"
    " SET plays = t.plays + excluded.plays, self_plays = t.self_plays + excluded.self_plays"
)
_UPSERT_ARTIST_TOTAL = (
    "INSERT INTO play_artist_total AS a (did, plays, self_plays)"
    " SELECT * FROM unnest(%s::text[], %s::bigint[], %s::bigint[]) ORDER BY 1"
    " ON CONFLICT (did) DO UPDATE"
    " SET plays = a.plays + excluded.plays, self_plays = a.self_plays + excluded.self_plays"
)


async def insert_plays(conn: AsyncConnection, plays: Sequence[CountedPlay]) -> int:
    """Store counted plays and their counts; plays whose id is stored change nothing.

    Returns how many were new.
    """
    unique = list({p.play_id: p for p in reversed(plays)}.values())  # first of each id
    if not unique:
        return 0
    cur = await conn.execute(
        "INSERT INTO play (play_id, listener, track_uri, did, played_at, window_end,"
        " self_play, source) SELECT * FROM unnest(%s::text[], %s::text[], %s::text[],"
        " %s::text[], %s::timestamptz[], %s::timestamptz[], %s::boolean[], %s::text[])"
        " ON CONFLICT (play_id) DO NOTHING RETURNING play_id",
        [
            [p.play_id for p in unique],
            [p.listener for p in unique],
            [p.track_uri for p in unique],
            [p.artist_did for p in unique],
            [p.at for p in unique],
            [p.window_end for p in unique],
            [p.self_play for p in unique],
            [p.source for p in unique],
        ],
    )
    inserted = {row[0] for row in await cur.fetchall()}
    new = [p for p in unique if p.play_id in inserted]
    if not new:
        return 0
    hourly: dict[tuple[str, datetime, str], list[int]] = {}
    track_total: dict[tuple[str, str], list[int]] = {}
    artist_total: dict[str, list[int]] = {}
    for p in new:
        for counts in (
            hourly.setdefault((p.track_uri, _hour(p.at), p.artist_did), [0, 0]),
            track_total.setdefault((p.track_uri, p.artist_did), [0, 0]),
            artist_total.setdefault(p.artist_did, [0, 0]),
        ):
            counts[0] += 1
            counts[1] += int(p.self_play)
    track_days = {(p.track_uri, _day(p.at), p.listener, p.artist_did) for p in new}
    artist_days = {(p.artist_did, _day(p.at), p.listener) for p in new}
    await conn.execute(_UPSERT_HOURLY, _columns([(*k, *v) for k, v in hourly.items()], 5))
    await conn.execute(_INSERT_TRACK_DAY, _columns(list(track_days), 4))
    await conn.execute(_INSERT_ARTIST_DAY, _columns(list(artist_days), 3))
    await conn.execute(_UPSERT_TRACK_TOTAL, _columns([(*k, *v) for k, v in track_total.items()], 4))
    await conn.execute(
        _UPSERT_ARTIST_TOTAL, _columns([(k, *v) for k, v in artist_total.items()], 3)
    )
    return len(new)


class PlaysProjector:
    """Qualifies play reports and projects counted plays into the plays tables.

    A :class:`~projectors.runner.ReducingProjector`: :meth:`reduce` parses a batch (pure),
    :meth:`write` loads the states the batch needs in one query, decides every report in
    log order and writes the counted plays set-based.
    """

    name = "plays"
    topic = "plays"
    tables: tuple[str, ...] = (
        "play",
        "play_hourly",
        "play_track_listener_day",
        "play_artist_listener_day",
        "play_track_total",
        "play_artist_total",
    )

    def __init__(self, *, qualify_reports: bool = True) -> None:
        """``qualify_reports=False`` in Kafka mode, where the stream worker qualifies."""
        self.qualify_reports = qualify_reports

    def reduce(self, envelopes: Sequence[Envelope]) -> tuple[Any, list[tuple[int, str]]]:
        """The batch's reports and counted plays in log order, and the invalid events."""
        items: list[PlayItem] = []
        rejected: list[tuple[int, str]] = []
        for index, envelope in enumerate(envelopes):
            try:
                if envelope.kind == "play.counted":
                    items.append(counted_play(envelope))
                elif envelope.kind == "play.reported" and self.qualify_reports:
                    items.append(play_report(envelope))
            except InvalidEvent as exc:
                rejected.append((index, str(exc)))
        return items, rejected

    async def write(self, conn: AsyncConnection, reduced: Any) -> None:
        """Decide the batch's reports against the stored state and store what counts."""
        items: list[PlayItem] = reduced
        pairs = sorted({(i.listener, i.track_uri) for i in items if isinstance(i, PlayReport)})
        states = await load_states(conn, pairs)
        plays = decide_batch(items, states)
        await insert_plays(conn, plays)
        if len(plays) < len(items):
            logger.debug("plays not counted", extra={"reports": len(items) - len(plays)})

    async def apply(self, conn: AsyncConnection, envelope: Envelope) -> None:
        """Apply one plays-topic event (the runner's one-at-a-time path)."""
        items, rejected = self.reduce([envelope])
        if rejected:
            raise InvalidEvent(rejected[0][1])
        await self.write(conn, items)
