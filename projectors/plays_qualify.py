"""Play qualification: which play reports count, as one pure function.

The embedded projector (:mod:`projectors.plays`, state in PostgreSQL) and the Kafka-mode
stream worker (state in a keyed table) both call :func:`qualify`, so the same reports in the
same order give the same counted plays in either mode. Reports are keyed by listener on the
log, so every report of one listener and track reaches one partition, in log order.

The rule (plyr.fm's, its issue 1441): a report counts once per listener and track per
*window*; the window is the track's duration clamped to 30 s .. 1 h, or 5 min when the
duration is unknown. A counted play at ``t`` with window ``w`` covers ``[t, t + w)``.

Invariant: the counted windows of one listener and track never overlap. From it:

- **Repeat inside a window**: a report whose time falls in a counted window is not counted
  (``repeat``). At the edge, ``t == start + w``, it counts: the window is half-open.
- **Duplicated play id** (at-least-once delivery, a retried request): a report whose play id
  is already counted is not counted again (``duplicate``); it falls in its own window anyway,
  so even without the id check it would be a ``repeat``.
- **Late or out-of-order report** (clock skew between API workers, a scrobble with an older
  ``playedTime``): a report earlier than the newest counted play counts only if its whole
  window fits in the gap between counted windows: it starts at or after the end of the
  counted window before it, and its own window ends at or before the start of the one after.
  A late report inside an already-counted window is a ``repeat``; one in a gap too narrow
  for its window is ``overlaps_later``: counting it would put two counted plays less than a
  window apart, which in-order arrival would never have done (the later one would have been
  the repeat), and a counted play is never taken back.
- **Too late**: reports more than :data:`LATENESS` before the newest counted play of the
  listener and track are not counted (``too_late``); that bounds the state to the windows of
  the last :data:`LATENESS`. A state holding older windows (PostgreSQL keeps every play) is
  pruned the same way first, so both modes decide alike.
- **Self-plays**: an artist listening to their own track (listener == the track's DID) is
  counted like anyone, flagged ``self_play`` so totals can leave it out.

Decisions depend only on the state and the report, and the state only grows (plus pruning
behind :data:`LATENESS`), so a report that was refused once is refused on every redelivery:
processing the same log twice counts each play once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, NamedTuple

__all__ = [
    "LATENESS",
    "MAX_WINDOW",
    "MIN_WINDOW",
    "UNKNOWN_DURATION_WINDOW",
    "CountedPlay",
    "PlayReport",
    "Qualification",
    "Reason",
    "Window",
    "qualify",
    "window_for",
]

MIN_WINDOW = timedelta(seconds=30)
MAX_WINDOW = timedelta(hours=1)
UNKNOWN_DURATION_WINDOW = timedelta(minutes=5)
LATENESS = timedelta(hours=24)
"""How far before the newest counted play of a listener and track a report may still count."""

Reason = Literal["counted", "repeat", "duplicate", "overlaps_later", "too_late"]


def window_for(duration_s: int | None) -> timedelta:
    """The dedupe window of a track: its duration clamped to 30 s .. 1 h; 5 min if unknown."""
    if duration_s is None or duration_s <= 0:
        return UNKNOWN_DURATION_WINDOW
    return min(MAX_WINDOW, max(MIN_WINDOW, timedelta(seconds=duration_s)))


@dataclass(frozen=True, slots=True)
class PlayReport:
    """One report that a listener played a track (from the API or a network scrobble)."""

    play_id: str
    listener: str
    """A DID, or ``cookie:<id>`` for the first-party cookie of an anonymous browser."""
    track_uri: str
    artist_did: str
    """The DID owning the track."""
    at: datetime
    """When it was played (aware)."""
    duration_s: int | None
    source: str = "api"


@dataclass(frozen=True, slots=True)
class CountedPlay:
    """A qualified play: the report, its window, and whether the artist played it."""

    play_id: str
    listener: str
    track_uri: str
    artist_did: str
    at: datetime
    window_end: datetime
    self_play: bool
    source: str


@dataclass(frozen=True, slots=True, order=True)
class Window:
    """The window ``[start, end)`` one counted play covers."""

    start: datetime
    end: datetime
    play_id: str


class Qualification(NamedTuple):
    """What :func:`qualify` decided: the new state, the counted play (or None), and why."""

    state: tuple[Window, ...]
    play: CountedPlay | None
    reason: Reason


def qualify(state: tuple[Window, ...], report: PlayReport) -> Qualification:
    """Decide whether ``report`` counts, given the counted windows of its listener and track.

    ``state`` is the windows counted so far for this listener and track, in any order
    (``()`` for none). Returns the new state (sorted, pruned behind :data:`LATENESS`), the
    counted play if it counts, and the reason; see the module docstring for the rule.
    """
    windows = sorted(state)
    if windows:
        horizon = windows[-1].start - LATENESS
        windows = [w for w in windows if w.end > horizon]
        if report.at < horizon:
            return Qualification(tuple(windows), None, "too_late")
    if any(w.play_id == report.play_id for w in windows):
        return Qualification(tuple(windows), None, "duplicate")
    end = report.at + window_for(report.duration_s)
    for w in windows:
        if w.start <= report.at < w.end:
            return Qualification(tuple(windows), None, "repeat")
        if report.at < w.start < end:
            return Qualification(tuple(windows), None, "overlaps_later")
    play = CountedPlay(
        play_id=report.play_id,
        listener=report.listener,
        track_uri=report.track_uri,
        artist_did=report.artist_did,
        at=report.at,
        window_end=end,
        self_play=report.listener == report.artist_did,
        source=report.source,
    )
    windows.append(Window(report.at, end, report.play_id))
    windows.sort()
    return Qualification(tuple(windows), play, "counted")
