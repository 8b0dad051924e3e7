"""The ``plays`` read model: counted plays and their counts (``plays`` topic).

Embedded mode: ``play.reported`` events are qualified here, by the same pure function the
Kafka-mode stream worker runs (:func:`projectors.plays_qualify.qualify`), with its state
(the counted windows of a listener and track) read from the ``play`` table inside the
runner's transaction, so the decision, the rows and the partition offset commit together:
each report is decided exactly once. The plays topic is keyed by listener, so all reports
of one listener and track are in one partition and decided in log order.

``play.counted`` events (written by the stream worker in Kafka mode) are stored as they
are; with ``qualify_reports=False`` (Kafka mode) reports are left to the stream worker.

Repo topic (its registry entry reads ``plays`` and ``repo``): only ``account.changed``
with status ``deleted`` matters; every other repo event is skipped. A deleted account's
plays are purged (:func:`purge_account`): as the artist of the tracks played and as a
listener (a DID listener), every play up to the deletion's time, with the counts derived
from them; the DID is kept in ``play_purge`` and later plays of it up to that time are
refused (:func:`refuse_purged`). Both rules look only at play and deletion *times*, never
at which topic was read first, so a rebuild (which interleaves the two topics its own
way) ends where the live run ended. One edge is left: a report inside the dedupe window
of a purged play, less than an hour after the deletion, may count in one order and not in
the other; the API answers 404 for a deleted artist's tracks and a deleted DID cannot
report, so only such a listener's own late reports could meet it. A purge and the plays
writers take an advisory lock (exclusive and shared) so a play being written while a
purge runs is not left behind by it. Takedowns hide, not purge: the API leaves hidden
tracks and accounts out of every plays-derived number.

Every count follows the insert of the ``play`` row (keyed by play id): only plays whose
row is new in this transaction add to the hourly buckets, the daily listener sets and the
totals, so a replayed or duplicated event changes nothing. Totals are incremented rather
than recounted (STYLE prefers recounts): recounting a hit track's plays on every batch costs
O(plays), and the increment is exactly as idempotent as the row it follows. Partitions are
written concurrently and share those rows, so every writer locks them in one order.
Schema: ``migrations/0013_plays.sql``.

Network scrobbles (``record.*`` events of ``fm.teal.feed.play`` records on the same topic)
are matched to a track and decided here, in both modes: :mod:`projectors.plays_scrobble`
(which also says why a plays rebuild needs the catalog built first).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import orjson
from psycopg import AsyncConnection

from kernel.account import DELETED, account_status
from kernel.envelope import Envelope
from projectors.base import InvalidEvent, parse_datetime
from projectors.plays_qualify import (
    LATENESS,
    CountedPlay,
    PlayReport,
    Window,
    qualify,
)
from projectors.plays_scrobble import (
    ScrobbleItem,
    choose_track,
    count_scrobbles,
    find_candidates,
    is_scrobble,
    remove_plays,
    scrobble_item,
    scrobble_report,
)

__all__ = [
    "AccountPurge",
    "PlayItem",
    "PlaysProjector",
    "counted_play",
    "decide_batch",
    "insert_plays",
    "load_purges",
    "load_states",
    "play_report",
    "purge_account",
    "purge_time",
    "refuse_purged",
]

logger = logging.getLogger(__name__)

_MAX_ID = 128
_REMOVAL_LOCK = 0x706C6179_72656D  # advisory lock key: batches that remove plays run alone
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

_END_OF_TIME = datetime(9999, 12, 31, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class AccountPurge:
    """A deleted account: its plays up to ``before`` go (see the module docstring)."""

    did: str
    before: datetime


def purge_time(envelope: Envelope) -> datetime:
    """When an account was deleted: the event's time; the end of time if unreadable
    (then every play of the account goes, whichever topic is read first)."""
    try:
        return parse_datetime(envelope.time, "time")
    except InvalidEvent:
        return _END_OF_TIME


async def load_purges(conn: AsyncConnection, dids: Sequence[str]) -> dict[str, datetime]:
    """``{did: before}`` of the deleted accounts among ``dids``."""
    if not dids:
        return {}
    cur = await conn.execute(
        "SELECT did, before FROM play_purge WHERE did = ANY(%s)", (sorted(set(dids)),)
    )
    return {did: before for did, before in await cur.fetchall()}


def refuse_purged(items: Sequence[PlayItem], purges: dict[str, datetime]) -> list[PlayItem]:
    """Pure: ``items`` without the plays of deleted accounts (as artist or listener)
    played up to their deletion."""
    if not purges:
        return list(items)
    return [
        i
        for i in items
        if not any(who in purges and i.at <= purges[who] for who in (i.artist_did, i.listener))
    ]


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


def _json_rows(rows: Sequence[tuple[Any, ...]]) -> tuple[str]:
    """Rows sorted by their key as one JSON array of arrays, for :func:`_from_json`.

    One JSON text per statement instead of a typed array per column: psycopg builds
    arrays element by element in Python, which was some 40% of the plays projector's CPU
    (``bench/bench_plays.py``); orjson writes the same rows in a fraction of that.
    Datetimes are written in ISO 8601 with their offset, dates as ``YYYY-MM-DD``.
    """
    return (orjson.dumps(sorted(rows)).decode(),)


def _from_json(*types: str) -> str:
    """``SELECT`` of the rows of a :func:`_json_rows` parameter, column ``i`` as ``types[i]``."""
    columns = ", ".join(
        f"r->>{i}" if t == "text" else f"(r->>{i})::{t}" for i, t in enumerate(types)
    )
    return f"SELECT {columns} FROM json_array_elements(%s::json) AS r"


# Shared rows (buckets, totals) are locked in one order by every writer, table by table and
# by key within each (INSERT ... SELECT ... ORDER BY), so partitions written concurrently
# wait for each other instead of deadlocking.
_UPSERT_HOURLY = (
    "INSERT INTO play_hourly AS h (track_uri, hour, did, plays, self_plays) "
    + _from_json("text", "timestamptz", "text", "int", "int")
    + " ORDER BY 1, 2"
    " ON CONFLICT (track_uri, hour) DO UPDATE"
    " SET plays = h.plays + excluded.plays, self_plays = h.self_plays + excluded.self_plays"
)
_INSERT_TRACK_DAY = (
    "INSERT INTO play_track_listener_day (track_uri, day, listener, did) "
    + _from_json("text", "date", "text", "text")
    + " ORDER BY 1, 2, 3 ON CONFLICT DO NOTHING"
)
_INSERT_ARTIST_DAY = (
    "INSERT INTO play_artist_listener_day (did, day, listener) "
    + _from_json("text", "date", "text")
    + " ORDER BY 1, 2, 3 ON CONFLICT DO NOTHING"
)
_UPSERT_TRACK_TOTAL = (
    "INSERT INTO play_track_total AS t (track_uri, did, plays, self_plays) "
    + _from_json("text", "text", "bigint", "bigint")
    + " ORDER BY 1 ON CONFLICT (track_uri) DO UPDATE"
    " SET plays = t.plays + excluded.plays, self_plays = t.self_plays + excluded.self_plays"
)
_UPSERT_ARTIST_TOTAL = (
    "INSERT INTO play_artist_total AS a (did, plays, self_plays) "
    + _from_json("text", "bigint", "bigint")
    + " ORDER BY 1 ON CONFLICT (did) DO UPDATE"
    " SET plays = a.plays + excluded.plays, self_plays = a.self_plays + excluded.self_plays"
)
_INSERT_PLAY = (
    "INSERT INTO play (play_id, listener, track_uri, did, played_at, window_end, self_play,"
    " source) "
    + _from_json("text", "text", "text", "text", "timestamptz", "timestamptz", "boolean", "text")
    + " ON CONFLICT (play_id) DO NOTHING RETURNING play_id"
)


async def insert_plays(conn: AsyncConnection, plays: Sequence[CountedPlay]) -> int:
    """Store counted plays and their counts; plays whose id is stored change nothing.

    Returns how many were new.
    """
    unique = list({p.play_id: p for p in reversed(plays)}.values())  # first of each id
    if not unique:
        return 0
    cur = await conn.execute(
        _INSERT_PLAY,
        _json_rows(
            [
                (
                    p.play_id,
                    p.listener,
                    p.track_uri,
                    p.artist_did,
                    p.at,
                    p.window_end,
                    p.self_play,
                    p.source,
                )
                for p in unique
            ]
        ),
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
    await conn.execute(_UPSERT_HOURLY, _json_rows([(*k, *v) for k, v in hourly.items()]))
    await conn.execute(_INSERT_TRACK_DAY, _json_rows(list(track_days)))
    await conn.execute(_INSERT_ARTIST_DAY, _json_rows(list(artist_days)))
    await conn.execute(_UPSERT_TRACK_TOTAL, _json_rows([(*k, *v) for k, v in track_total.items()]))
    await conn.execute(_UPSERT_ARTIST_TOTAL, _json_rows([(k, *v) for k, v in artist_total.items()]))
    return len(new)


_PURGE_LOCK = 0x706C617973  # "plays": purges exclusive, plays writers shared


async def purge_account(conn: AsyncConnection, purge: AccountPurge) -> int:
    """Remove a deleted account's plays (as artist and as listener) played up to
    ``purge.before``, take them out of every count, and remember the deletion.

    Counts go down by exactly what was deleted, through the same ordered upserts as
    :func:`insert_plays` (negative amounts), and rows left at zero are deleted, so the
    tables equal those of a run that never counted these plays. Returns plays removed.
    """
    await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_PURGE_LOCK,))
    await conn.execute(
        "INSERT INTO play_purge (did, before) VALUES (%s, %s) ON CONFLICT (did) DO UPDATE"
        " SET before = GREATEST(play_purge.before, excluded.before)",
        (purge.did, purge.before),
    )
    cur = await conn.execute(
        "DELETE FROM play WHERE (did = %s OR listener = %s) AND played_at <= %s"
        " RETURNING track_uri, did, listener, played_at, self_play",
        (purge.did, purge.did, purge.before),
    )
    gone = await cur.fetchall()
    if not gone:
        return 0
    hourly: dict[tuple[str, datetime, str], list[int]] = {}
    track_total: dict[tuple[str, str], list[int]] = {}
    artist_total: dict[str, list[int]] = {}
    for uri, did, _, at, self_play in gone:
        for counts in (
            hourly.setdefault((uri, _hour(at), did), [0, 0]),
            track_total.setdefault((uri, did), [0, 0]),
            artist_total.setdefault(did, [0, 0]),
        ):
            counts[0] -= 1
            counts[1] -= int(self_play)
    await conn.execute(_UPSERT_HOURLY, _json_rows([(*k, *v) for k, v in hourly.items()]))
    await conn.execute(_UPSERT_TRACK_TOTAL, _json_rows([(*k, *v) for k, v in track_total.items()]))
    await conn.execute(_UPSERT_ARTIST_TOTAL, _json_rows([(k, *v) for k, v in artist_total.items()]))
    await conn.execute(
        "DELETE FROM play_hourly WHERE plays <= 0 AND (track_uri, hour) IN"
        " (SELECT * FROM unnest(%s::text[], %s::timestamptz[]))",
        _columns([k[:2] for k in hourly], 2),
    )
    await conn.execute(
        "DELETE FROM play_track_total WHERE plays <= 0 AND track_uri = ANY(%s)",
        (sorted({k[0] for k in track_total}),),
    )
    await conn.execute(
        "DELETE FROM play_artist_total WHERE plays <= 0 AND did = ANY(%s)",
        (sorted(artist_total),),
    )
    # A listener stays in a day's set while any play of theirs that day remains.
    track_days = sorted({(uri, _day(at), listener) for uri, _, listener, at, _ in gone})
    artist_days = sorted({(did, _day(at), listener) for _, did, listener, at, _ in gone})
    await conn.execute(
        "DELETE FROM play_track_listener_day d USING unnest(%s::text[], %s::date[], %s::text[])"
        " AS g(track_uri, day, listener) WHERE d.track_uri = g.track_uri AND d.day = g.day"
        " AND d.listener = g.listener AND NOT EXISTS (SELECT 1 FROM play p"
        "  WHERE p.listener = g.listener AND p.track_uri = g.track_uri"
        "  AND p.played_at >= g.day::timestamp AT TIME ZONE 'UTC'"
        "  AND p.played_at < (g.day + 1)::timestamp AT TIME ZONE 'UTC')",
        _columns(track_days, 3),
    )
    await conn.execute(
        "DELETE FROM play_artist_listener_day d USING unnest(%s::text[], %s::date[], %s::text[])"
        " AS g(did, day, listener) WHERE d.did = g.did AND d.day = g.day"
        " AND d.listener = g.listener AND NOT EXISTS (SELECT 1 FROM play p"
        "  WHERE p.did = g.did AND p.listener = g.listener"
        "  AND p.played_at >= g.day::timestamp AT TIME ZONE 'UTC'"
        "  AND p.played_at < (g.day + 1)::timestamp AT TIME ZONE 'UTC')",
        _columns(artist_days, 3),
    )
    logger.info("plays purged", extra={"did": purge.did, "plays": len(gone)})
    return len(gone)


class PlaysProjector:
    """Qualifies play reports and projects counted plays into the plays tables.

    A :class:`~projectors.runner.ReducingProjector`: :meth:`reduce` parses a batch (pure),
    :meth:`write` loads the states the batch needs in one query, decides every report in
    log order and writes the counted plays set-based.
    """

    name = "plays"
    topic = "plays"
    linger = 0.25
    """Seconds the runner lets a steady stream of reports gather into one batch: a batch's
    transaction costs about as much as its first few plays (CPU per play at 2 plays a
    partition is seven times that at 100), and a play counted 0.25 s later is still
    well inside the lag allowed (``bench/bench_plays.py``)."""
    tables: tuple[str, ...] = (
        "play_purge",
        "play",
        "play_hourly",
        "play_track_listener_day",
        "play_artist_listener_day",
        "play_track_total",
        "play_artist_total",
        "play_scrobble_counter",
    )

    def __init__(
        self, *, qualify_reports: bool = True, frontend_url: str = "https://plyr.fm"
    ) -> None:
        """``qualify_reports=False`` in Kafka mode, where the stream worker qualifies;
        ``frontend_url``: whose ``/track/{id}`` pages a scrobble's ``originUri`` may name."""
        self.qualify_reports = qualify_reports
        self.frontend_url = frontend_url

    def reduce(self, envelopes: Sequence[Envelope]) -> tuple[Any, list[tuple[int, str]]]:
        """The batch's reports, counted plays, scrobbles and account purges in log order,
        and the invalid events."""
        items: list[PlayItem | ScrobbleItem | AccountPurge] = []
        rejected: list[tuple[int, str]] = []
        for index, envelope in enumerate(envelopes):
            try:
                if envelope.kind == "account.changed":
                    if account_status(envelope.status, envelope.active) == DELETED:
                        items.append(AccountPurge(envelope.did, purge_time(envelope)))
                elif is_scrobble(envelope):
                    items.append(scrobble_item(envelope))
                elif envelope.kind == "play.counted":
                    items.append(counted_play(envelope))
                elif envelope.kind == "play.reported" and self.qualify_reports:
                    items.append(play_report(envelope))
            except InvalidEvent as exc:
                rejected.append((index, str(exc)))
        return items, rejected

    async def write(self, conn: AsyncConnection, reduced: Any) -> None:
        """Purge deleted accounts, then decide the batch's reports against the stored state
        and store what counts (plays of purged accounts refused).

        Scrobbles are matched first; a scrobble update or delete removes its play before
        the rest of the batch is decided, so the batch is cut there (log order is kept).
        """
        if not reduced:
            return
        purges = [s for s in reduced if isinstance(s, AccountPurge)]
        steps = [s for s in reduced if not isinstance(s, AccountPurge)]
        # Two advisory locks, always taken in this order by every batch (so no two writers
        # wait on each other crosswise): a purge runs alone among plays writers; removing
        # plays touches the shared rows (buckets, totals) out of the one lock order
        # insert_plays keeps, so such a batch runs alone too; every other batch shares both.
        await conn.execute(
            "SELECT pg_advisory_xact_lock(%s)"
            if purges
            else "SELECT pg_advisory_xact_lock_shared(%s)",
            (_PURGE_LOCK,),
        )
        for purge in purges:
            await purge_account(conn, purge)
        if not steps:
            return
        removes = any(isinstance(i, ScrobbleItem) and i.replaces for i in steps)
        await conn.execute(
            "SELECT pg_advisory_xact_lock(%s)"
            if removes
            else "SELECT pg_advisory_xact_lock_shared(%s)",
            (_REMOVAL_LOCK,),
        )
        pending: list[PlayItem] = []
        counts = {"matched": 0, "unmatched": 0, "removed": 0}
        for item in steps:
            if not isinstance(item, ScrobbleItem):
                pending.append(item)
                continue
            if item.replaces:
                await self._decide(conn, pending)
                pending = []
                counts["removed"] += await remove_plays(conn, [item.play_id])
            if item.scrobble is None:
                continue
            candidates = await find_candidates(conn, item.scrobble, self.frontend_url)
            track = choose_track(item.scrobble, candidates, self.frontend_url)
            if track is None:
                counts["unmatched"] += 1
                continue
            counts["matched"] += 1
            pending.append(scrobble_report(item, track))
        await self._decide(conn, pending)
        await count_scrobbles(conn, counts)

    async def _decide(self, conn: AsyncConnection, items: list[PlayItem]) -> None:
        if not items:
            return
        people = {i.artist_did for i in items} | {i.listener for i in items}
        purges = await load_purges(conn, [d for d in people if d.startswith("did:")])
        items = refuse_purged(items, purges)
        pairs = sorted({(i.listener, i.track_uri) for i in items if isinstance(i, PlayReport)})
        states = await load_states(conn, pairs)
        plays = decide_batch(items, states)
        await insert_plays(conn, plays)
        if len(plays) < len(items):
            logger.debug("plays not counted", extra={"reports": len(items) - len(plays)})

    async def apply(self, conn: AsyncConnection, envelope: Envelope) -> None:
        """Apply one plays- or repo-topic event (the runner's one-at-a-time path)."""
        items, rejected = self.reduce([envelope])
        if rejected:
            raise InvalidEvent(rejected[0][1])
        await self.write(conn, items)
