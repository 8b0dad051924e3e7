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

**Network scrobbles.** ``fm.teal.feed.play`` / ``fm.teal.alpha.feed.play`` records
(:data:`SCROBBLE_COLLECTIONS`) written by any repo are listeners' plays. Ingest checks their
shape (:func:`parse_scrobble`) and puts them on the same topic as record events of the
listener's repo (:func:`scrobble_envelope`): ``record.created``/``updated``/``deleted`` with
``did`` = the listener (the log key), ``collection``/``rkey``/``rev``/``cid`` of the scrobble
record (so a delete names the play it takes back) and the record, checked again downstream
(the log is input too). The plays projector matches
them to a track (:func:`origin_track_id` for ``originUri``, else by name) and counts them
with source :data:`NETWORK_SOURCE`; the play id is the scrobble's AT-URI.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from kernel.envelope import Envelope, Kind

__all__ = [
    "NETWORK_SOURCE",
    "SCROBBLE_COLLECTIONS",
    "TRACK_COLLECTION",
    "Scrobble",
    "ScrobbleError",
    "iso_time",
    "new_play_id",
    "origin_track_id",
    "parse_scrobble",
    "play_counted",
    "play_reported",
    "scrobble_envelope",
]

TRACK_COLLECTION = "fm.plyr.track"
SCROBBLE_COLLECTIONS: tuple[str, ...] = ("fm.teal.feed.play", "fm.teal.alpha.feed.play")
"""Scrobble records (teal.fm's lexicon, current and alpha) counted as network plays."""
NETWORK_SOURCE = "network"
"""The ``source`` of a play counted from a scrobble record (its provenance in ``play``)."""

_MAX_TEXT = 2560  # the lexicon's maxGraphemes; characters >= graphemes, so never too strict
_MAX_URI = 2048
_MAX_ARTISTS = 64
_MAX_DURATION = 7 * 24 * 3600
_BAD_CHARS = re.compile("[\x00-\x1f\x7f\ud800-\udfff]")
_TRACK_PATH = re.compile(r"/track/([0-9]{1,16})/?")


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


class ScrobbleError(ValueError):
    """A scrobble record (or its fields on the log) does not have the expected shape."""


@dataclass(frozen=True, slots=True)
class Scrobble:
    """The fields of a scrobble record that matching and counting use, checked."""

    track_name: str
    artist_names: tuple[str, ...]
    origin_uri: str | None = None
    played_time: str | None = None
    """ISO 8601 UTC (``Z``), or absent: then the commit's time is the play's."""
    duration_s: int | None = None
    release_name: str | None = None


def _text(value: object, name: str, limit: int = _MAX_TEXT) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ScrobbleError(f"{name}: expected a non-empty string")
    if len(value) > limit:
        raise ScrobbleError(f"{name}: longer than {limit} characters")
    if _BAD_CHARS.search(value):
        # NUL (PostgreSQL text cannot hold it), controls, lone surrogates (not encodable)
        raise ScrobbleError(f"{name}: holds a NUL, control or invalid character")
    return value


def _optional_text(value: object, name: str, limit: int = _MAX_TEXT) -> str | None:
    return None if value is None else _text(value, name, limit)


def _time(value: object, name: str) -> str | None:
    if value is None:
        return None
    text = _text(value, name, 64)
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ScrobbleError(f"{name}: not an ISO 8601 datetime") from None
    if when.tzinfo is None:
        raise ScrobbleError(f"{name}: needs a timezone")
    return iso_time(when)


def _duration(value: object, name: str) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= _MAX_DURATION:
        raise ScrobbleError(f"{name}: expected whole seconds (0 to {_MAX_DURATION})")
    return value


def _names(values: object, name: str) -> tuple[str, ...]:
    if not isinstance(values, list) or len(values) > _MAX_ARTISTS:
        raise ScrobbleError(f"{name}: expected a list of at most {_MAX_ARTISTS}")
    return tuple(_text(v, f"{name}[]") for v in values)


def parse_scrobble(record: Mapping[str, Any]) -> Scrobble:
    """Pure: the checked :class:`Scrobble` of a scrobble record; :class:`ScrobbleError` if bad.

    ``trackName`` is required; artists come from ``artists[].artistName`` (current
    lexicon) or ``artistNames`` (deprecated, alpha records). Unknown fields are ignored.
    ``originUri`` is only checked to be short printable text: it is compared, never fetched.
    """
    artists = record.get("artists")
    if artists is not None:
        if not isinstance(artists, list) or len(artists) > _MAX_ARTISTS:
            raise ScrobbleError(f"artists: expected a list of at most {_MAX_ARTISTS}")
        names = []
        for artist in artists:
            if not isinstance(artist, Mapping):
                raise ScrobbleError("artists[]: expected an object")
            names.append(_text(artist.get("artistName"), "artists[].artistName"))
        artist_names = tuple(names)
    elif record.get("artistNames") is not None:
        artist_names = _names(record.get("artistNames"), "artistNames")
    else:
        artist_names = ()
    return Scrobble(
        track_name=_text(record.get("trackName"), "trackName"),
        artist_names=artist_names,
        origin_uri=_optional_text(record.get("originUri"), "originUri", _MAX_URI),
        played_time=_time(record.get("playedTime"), "playedTime"),
        duration_s=_duration(record.get("duration"), "duration"),
        release_name=_optional_text(record.get("releaseName"), "releaseName"),
    )


def scrobble_envelope(
    *,
    kind: Kind,
    listener: str,
    collection: str,
    rkey: str,
    source: str,
    time: str,
    seq: int | None = None,
    rev: str | None = None,
    cid: str | None = None,
    record: dict[str, Any] | None = None,
) -> Envelope:
    """The plays-topic event of one scrobble record op (``record`` is None for deletes).

    The caller has checked ``record`` with :func:`parse_scrobble`.
    """
    if collection not in SCROBBLE_COLLECTIONS:
        raise ValueError(f"not a scrobble collection: {collection!r}")
    if kind not in ("record.created", "record.updated", "record.deleted"):
        raise ValueError(f"not a record event: {kind!r}")
    if (record is None) != (kind == "record.deleted"):
        raise ValueError("a record for creates and updates, none for deletes")
    return Envelope(
        kind=kind,
        did=listener,
        source=source,
        time=time,
        seq=seq,
        rev=rev,
        collection=collection,
        rkey=rkey,
        cid=cid,
        record=record,
    )


def origin_track_id(origin_uri: str, frontend_url: str) -> int | None:
    """Pure: the track id an ``originUri`` names, if it is one of our track pages.

    Our pages are ``{frontend_url}/track/{id}`` (``id`` from :func:`kernel.ids.track_id`),
    with an optional trailing slash, query or fragment. Scheme and host compare
    case-insensitively, a default port equals none; anything else (another host, a
    user-info part, a path outside ``/track/``, junk) is not a match. Never fetched.
    """
    try:
        page, front = urlsplit(origin_uri.strip()), urlsplit(frontend_url)
        page_port, front_port = page.port, front.port
    except ValueError:
        return None
    default = {"https": 443, "http": 80}
    if (
        page.scheme.lower() != front.scheme.lower()
        or page.username is not None
        or page.password is not None
        or (page.hostname or "") != (front.hostname or "").lower()
        or (page_port or default.get(page.scheme.lower()))
        != (front_port or default.get(front.scheme.lower()))
    ):
        return None
    base = front.path.rstrip("/")
    if not page.path.startswith(base):
        return None
    found = _TRACK_PATH.fullmatch(page.path[len(base) :])
    if found is None:
        return None
    value = int(found.group(1))
    return value if value < 1 << 53 else None
