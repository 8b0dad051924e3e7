"""Radio: a few stations, each a loop of tracks that every listener hears in step.

plyr's web client tunes in through ``GET /radio/stations`` and ``GET /radio/state``; the
shapes are plyr.fm's. A station is a corpus filter and a ranking (its lens). Its rotation
is drawn once per period (:data:`PERIOD_S`, 4 h) from the catalog *as it stood when the
period began*: tracks indexed before it, likes and plays counted before it (the latter
from ``play_hourly``), ranked by the lens, weighted by rank (``exp(-rank / decay)``) and
drawn without replacement by a generator seeded with the station and the period, with a
share of uniform draws (the tail airs too), an airtime budget per artist and a spacing
between an artist's entries. So every API process computes the same rotation for the
same period without shared state (plyr.fm pins its rotations in Redis instead).

"Indexed before" is ``least(created_at, indexed_at)``: an edited track stays in, but so
does an old record back-filled during the period, so while a back-fill runs the loop may
shift and API processes may disagree. A station with nothing settled at the period's
start (a new appview) draws from what is indexed now, on every request and without
caching, until the next period settles it.

The loop starts at the period's start: the track airing at an instant is a function of
the instant. At a period boundary the new loop starts, cutting the last track short
(plyr.fm does the same when its Redis is gone). Moderation applies at once: the serving
query keeps only the rotation's tracks still visible in lists, so a takedown drops its
track from the loop (the loop then shifts).
"""

from __future__ import annotations

import hashlib
import math
import random
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from psycopg import AsyncConnection

from api.catalog import DEFAULT_HIDDEN_TAGS, rows
from api.visibility import Visibility

__all__ = [
    "DEFAULT_SECONDS",
    "DEFAULT_STATION",
    "PERIOD_S",
    "STATIONS",
    "Candidate",
    "LoopPosition",
    "RotationCache",
    "Station",
    "draw_rotation",
    "load_candidates",
    "locate",
    "period_start",
    "rank",
]

PERIOD_S = 4 * 3600
"""Length of a rotation period; periods start at multiples of it since the epoch."""

DEFAULT_SECONDS = 180
"""Airtime of a track whose record gives no duration."""

TARGET_S = 4 * 3600
ARTIST_BUDGET_S = 20 * 60
ARTIST_SPACING = 3
EXPLORATION = 0.25
MATURITY_DAYS = 30.0


@dataclass(frozen=True, slots=True)
class Candidate:
    """A track eligible for a station, with the signals of the period's start."""

    uri: str
    did: str
    seconds: int
    created_at: datetime
    tags: tuple[str, ...]
    likes: int
    plays: int


Lens = Callable[[Candidate, int, datetime], float]
"""Score of a candidate (higher airs more), given its recency rank and the period start."""


def _loved(c: Candidate, recency: int, at: datetime) -> float:
    return 3.0 * c.likes + math.log1p(c.plays)


def _fresh(c: Candidate, recency: int, at: datetime) -> float:
    return -float(recency)


def _deep_cuts(c: Candidate, recency: int, at: datetime) -> float:
    age_days = max(0.0, (at - c.created_at).total_seconds() / 86400)
    unplayed = 1.0 / (1.0 + math.log1p(c.plays))
    matured = 1.0 - math.exp(-age_days / MATURITY_DAYS)
    return unplayed * matured + 0.1 * math.log1p(c.likes)


def _is_slop(c: Candidate) -> bool:
    return any(tag in DEFAULT_HIDDEN_TAGS for tag in c.tags)


@dataclass(frozen=True, slots=True)
class Station:
    """One station of the lineup."""

    slug: str
    name: str
    description: str
    lens: Lens
    slop: bool = False  # only tracks with a default-hidden tag, instead of none of them
    decay: float = 12.0
    exploration: float = EXPLORATION

    def eligible(self, c: Candidate) -> bool:
        return _is_slop(c) == self.slop


STATIONS: tuple[Station, ...] = (
    Station("loved", "loved", "the most liked and played tracks", _loved),
    # Uniform draws would air old tracks on a station of new ones.
    Station("fresh", "fresh", "the newest uploads", _fresh, exploration=0.0),
    # Near-equal scores across the long tail: reach deeper than the popular stations.
    Station(
        "deep-cuts",
        "deep cuts",
        "underplayed tracks from the back catalog",
        _deep_cuts,
        decay=48.0,
    ),
    Station("slop", "slop", "ai-generated tracks", _loved, slop=True),
)
DEFAULT_STATION = "loved"


def period_start(now: datetime) -> datetime:
    """The start of the period ``now`` falls in (``now`` timezone-aware)."""
    epoch = int(now.timestamp())
    return datetime.fromtimestamp(epoch - epoch % PERIOD_S, tz=now.tzinfo)


async def load_candidates(
    conn: AsyncConnection, vis: Visibility, start: datetime, *, settled: bool = True
) -> list[Candidate]:
    """Tracks in lists, ungated, newest first, with the likes and plays counted before
    ``start``; with ``settled``, only those indexed before ``start``
    (``least(created_at, indexed_at)``: an edit, a later ``indexed_at``, keeps a track in;
    a new upload stays out until the next period)."""
    settled_clause = " AND least(t.created_at, t.indexed_at) < %(start)s" if settled else ""
    found = await rows(
        conn,
        'WITH likes AS (SELECT subject_uri, count(*) AS n FROM "like"'
        " WHERE created_at < %(start)s GROUP BY subject_uri),"
        " plays AS (SELECT track_uri, sum(plays) AS n FROM play_hourly"
        " WHERE hour < %(start)s GROUP BY track_uri)"
        " SELECT t.uri, t.did, t.duration, t.created_at, t.tags,"
        " coalesce(l.n, 0) AS likes, coalesce(p.n, 0) AS plays"
        " FROM track t LEFT JOIN likes l ON l.subject_uri = t.uri"
        " LEFT JOIN plays p ON p.track_uri = t.uri"
        f" WHERE {vis.track('list')} AND t.support_gate IS NULL{settled_clause}"
        " ORDER BY t.created_at DESC, t.id DESC",
        {"start": start},
    )
    return [
        Candidate(
            uri=r["uri"],
            did=r["did"],
            seconds=r["duration"] if r["duration"] and r["duration"] > 0 else DEFAULT_SECONDS,
            created_at=r["created_at"],
            tags=tuple(r["tags"] or ()),
            likes=int(r["likes"]),
            plays=int(r["plays"]),
        )
        for r in found
    ]


def rank(station: Station, candidates: Sequence[Candidate], at: datetime) -> list[Candidate]:
    """The station's eligible ``candidates`` (newest first), best first; ties keep
    recency order."""
    eligible = [c for c in candidates if station.eligible(c)]
    scored = [(station.lens(c, i, at), i, c) for i, c in enumerate(eligible)]
    scored.sort(key=lambda s: (-s[0], s[1]))
    return [c for _, _, c in scored]


def draw_rotation(
    station: Station, ranked: Sequence[Candidate], period: int, limit: int
) -> list[Candidate]:
    """Up to ``limit`` tracks (and about :data:`TARGET_S` of airtime) drawn from
    ``ranked``; the same arguments always give the same rotation."""
    seed = hashlib.blake2b(f"{station.slug}/{period}".encode(), digest_size=8).digest()
    rng = random.Random(int.from_bytes(seed, "big"))
    left = list(ranked)
    weights = [math.exp(-r / station.decay) for r in range(len(left))]
    chosen: list[Candidate] = []
    airtime: dict[str, int] = {}
    total = 0
    while left and len(chosen) < limit and total < TARGET_S:
        under = [i for i, c in enumerate(left) if airtime.get(c.did, 0) < ARTIST_BUDGET_S]
        recent = {c.did for c in chosen[-ARTIST_SPACING:]}
        # Spacing gives way when only recent artists are left (a thin catalog).
        pool = [i for i in under if left[i].did not in recent] or under
        if not pool:
            break
        if rng.random() < station.exploration:
            pick = pool[rng.randrange(len(pool))]
        else:
            pick = rng.choices(pool, weights=[weights[i] for i in pool])[0]
        track = left.pop(pick)
        weights.pop(pick)
        chosen.append(track)
        airtime[track.did] = airtime.get(track.did, 0) + track.seconds
        total += track.seconds
    return chosen


@dataclass(frozen=True, slots=True)
class LoopPosition:
    """Where the loop stands at an instant."""

    index: int
    progress_s: int
    started_at: datetime
    ends_at: datetime


def locate(durations: Sequence[int], anchor: datetime, now: datetime) -> LoopPosition | None:
    """The entry of a loop of ``durations`` (seconds) started at ``anchor`` that airs at
    ``now``; ``None`` for an empty loop."""
    loop = sum(durations)
    if loop <= 0:
        return None
    offset = int((now - anchor).total_seconds()) % loop
    for index, seconds in enumerate(durations):
        if offset < seconds:
            started = now - timedelta(seconds=offset)
            return LoopPosition(index, offset, started, started + timedelta(seconds=seconds))
        offset -= seconds
    raise AssertionError("unreachable: offset < loop")


class RotationCache:
    """Rotations (track URIs) per (station, limit, period start), for one API process:
    they cannot change within a period, so each is drawn once. Keeps ``max_entries``."""

    def __init__(self, max_entries: int = 64) -> None:
        self._entries: OrderedDict[tuple[str, int, datetime], list[str]] = OrderedDict()
        self._max = max_entries

    def get(self, key: tuple[str, int, datetime]) -> list[str] | None:
        found = self._entries.get(key)
        if found is not None:
            self._entries.move_to_end(key)
        return found

    def put(self, key: tuple[str, int, datetime], uris: list[str]) -> None:
        self._entries[key] = uris
        self._entries.move_to_end(key)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)
