"""The ``plays`` read model: counted plays and their counts (``plays`` topic).

Embedded mode: ``play.reported`` events are qualified here, by the same pure function the
Kafka-mode stream worker runs (:func:`projectors.plays_qualify.qualify`), with its state
(the counted windows of a listener and track) read from the ``play`` table inside the
runner's transaction, so the decision, the rows and the partition offset commit together:
each report is decided exactly once. The plays topic is keyed by listener, so all reports
of one listener and track are in one partition and decided in log order.

``play.counted`` events (written by the stream worker in Kafka mode) are stored as they
are; with ``qualify_reports=False`` (Kafka mode) reports are left to the stream worker.

Every write hangs off the insert of the ``play`` row (keyed by play id): the hourly bucket,
the daily listener sets and the totals change only when that insert happened, in the same
statement, so a replayed or duplicated event changes nothing. Totals are incremented rather
than recounted (STYLE prefers recounts): recounting a hit track's plays on every play costs
O(plays), and the increment is exactly as idempotent as the row it follows.
Schema: ``migrations/0013_plays.sql``.
"""

from __future__ import annotations

import logging
from datetime import UTC

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

__all__ = ["PlaysProjector", "counted_play", "insert_play", "load_state", "play_report"]

log = logging.getLogger(__name__)

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


async def load_state(conn: AsyncConnection, listener: str, track_uri: str) -> tuple[Window, ...]:
    """The counted windows of one listener and track that :func:`qualify` still looks at."""
    cur = await conn.execute(
        "SELECT played_at, window_end, play_id FROM play"
        " WHERE listener = %s AND track_uri = %s AND window_end > ("
        "  SELECT max(played_at) FROM play WHERE listener = %s AND track_uri = %s) - %s",
        (listener, track_uri, listener, track_uri, LATENESS),
    )
    return tuple(Window(start, end, play_id) for start, end, play_id in await cur.fetchall())


_INSERT_PLAY = """
WITH ins AS (
    INSERT INTO play (play_id, listener, track_uri, did, played_at, window_end, self_play, source)
    VALUES (%(play_id)s, %(listener)s, %(uri)s, %(did)s, %(at)s, %(window_end)s, %(self)s,
            %(source)s)
    ON CONFLICT (play_id) DO NOTHING
    RETURNING 1
), hourly AS (
    INSERT INTO play_hourly AS h (track_uri, hour, did, plays, self_plays)
    SELECT %(uri)s, %(hour)s, %(did)s, 1, %(self_n)s FROM ins
    ON CONFLICT (track_uri, hour) DO UPDATE
       SET plays = h.plays + 1, self_plays = h.self_plays + excluded.self_plays
), track_day AS (
    INSERT INTO play_track_listener_day (track_uri, day, listener, did)
    SELECT %(uri)s, %(day)s, %(listener)s, %(did)s FROM ins
    ON CONFLICT DO NOTHING
), artist_day AS (
    INSERT INTO play_artist_listener_day (did, day, listener)
    SELECT %(did)s, %(day)s, %(listener)s FROM ins
    ON CONFLICT DO NOTHING
), track_total AS (
    INSERT INTO play_track_total AS t (track_uri, did, plays, self_plays)
    SELECT %(uri)s, %(did)s, 1, %(self_n)s FROM ins
    ON CONFLICT (track_uri) DO UPDATE
       SET plays = t.plays + 1, self_plays = t.self_plays + excluded.self_plays
), artist_total AS (
    INSERT INTO play_artist_total AS a (did, plays, self_plays)
    SELECT %(did)s, 1, %(self_n)s FROM ins
    ON CONFLICT (did) DO UPDATE
       SET plays = a.plays + 1, self_plays = a.self_plays + excluded.self_plays
)
SELECT count(*) FROM ins
"""


async def insert_play(conn: AsyncConnection, play: CountedPlay) -> bool:
    """Store a counted play and its counts; False (nothing changed) if its id is stored."""
    at = play.at.astimezone(UTC)
    cur = await conn.execute(
        _INSERT_PLAY,
        {
            "play_id": play.play_id,
            "listener": play.listener,
            "uri": play.track_uri,
            "did": play.artist_did,
            "at": play.at,
            "window_end": play.window_end,
            "self": play.self_play,
            "self_n": int(play.self_play),
            "source": play.source,
            "hour": at.replace(minute=0, second=0, microsecond=0),
            "day": at.date(),
        },
    )
    row = await cur.fetchone()
    return row is not None and row[0] == 1


class PlaysProjector:
    """Qualifies play reports and projects counted plays into the plays tables."""

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

    async def apply(self, conn: AsyncConnection, envelope: Envelope) -> None:
        """Apply one plays-topic event inside the runner's transaction."""
        if envelope.kind == "play.counted":
            await insert_play(conn, counted_play(envelope))
        elif envelope.kind == "play.reported" and self.qualify_reports:
            report = play_report(envelope)
            state = await load_state(conn, report.listener, report.track_uri)
            _, play, reason = qualify(state, report)
            if play is not None:
                await insert_play(conn, play)
            else:
                log.debug(
                    "play not counted",
                    extra={"uri": report.track_uri, "play_id": report.play_id, "reason": reason},
                )
