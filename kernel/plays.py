"""The play events on the ``plays`` topic: ``play.reported`` and ``play.counted``.

Both are :class:`~kernel.envelope.Envelope` values keyed by the listener (a DID, or
``cookie:<id>`` for an anonymous browser), so one listener's reports stay in one partition
and in order. ``did``/``collection``/``rkey`` name the track played (its URI is
``envelope.uri``), ``time`` is when it was played, and ``play`` holds:

- ``id``: the play id, unique per report (the idempotency key downstream);
- ``listener``; ``duration`` (the track's duration in seconds when reported, or absent);
  ``ref`` (a share code, optional);
- for ``play.counted`` also ``window_end`` (ISO time) and ``self`` (the artist's own play).

The API builds reports (:func:`play_reported`); the qualifier (embedded projector or stream
worker) turns the ones that count into :func:`play_counted` facts.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from kernel.envelope import Envelope

__all__ = ["TRACK_COLLECTION", "iso_time", "new_play_id", "play_counted", "play_reported"]

TRACK_COLLECTION = "fm.plyr.track"


def new_play_id() -> str:
    """A fresh, unique play id (a random UUID as text)."""
    return uuid.uuid4().hex


def iso_time(when: datetime) -> str:
    """``when`` as the envelope writes times: ISO 8601 in UTC with ``Z``."""
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _track_parts(track_uri: str) -> tuple[str, str, str]:
    if not track_uri.startswith("at://"):
        raise ValueError(f"not an AT-URI: {track_uri!r}")
    parts = track_uri[len("at://") :].split("/")
    if len(parts) != 3 or not all(parts):
        raise ValueError(f"not a record AT-URI: {track_uri!r}")
    return parts[0], parts[1], parts[2]


def play_reported(
    *,
    play_id: str,
    listener: str,
    track_uri: str,
    at: datetime,
    duration_s: int | None,
    ref: str | None = None,
    source: str = "api",
) -> Envelope:
    """The ``play.reported`` event of one report of ``listener`` playing ``track_uri``."""
    did, collection, rkey = _track_parts(track_uri)
    play: dict[str, Any] = {"id": play_id, "listener": listener}
    if duration_s is not None:
        play["duration"] = duration_s
    if ref is not None:
        play["ref"] = ref
    return Envelope(
        kind="play.reported",
        did=did,
        source=source,
        time=iso_time(at),
        collection=collection,
        rkey=rkey,
        play=play,
    )


def play_counted(reported: Envelope, *, window_end: datetime, self_play: bool) -> Envelope:
    """The ``play.counted`` fact for a ``play.reported`` event that qualified."""
    if reported.kind != "play.reported" or reported.play is None:
        raise ValueError("play_counted needs a play.reported event")
    play = {**reported.play, "window_end": iso_time(window_end), "self": self_play}
    return Envelope(
        kind="play.counted",
        did=reported.did,
        source=reported.source,
        time=reported.time,
        collection=reported.collection,
        rkey=reported.rkey,
        play=play,
    )
