"""The play events (kernel/plays.py) and their envelope: round trip, key, validation."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from kernel.envelope import Envelope, EnvelopeError
from kernel.plays import new_play_id, play_counted, play_reported

ARTIST = "did:plc:artistartistartistartist"
TRACK = f"at://{ARTIST}/fm.plyr.track/3kabc"
AT = datetime(2026, 11, 1, 12, 0, 5, tzinfo=UTC)


def test_reported_round_trips_keyed_by_listener():
    env = play_reported(
        play_id="p1", listener="cookie:xyz", track_uri=TRACK, at=AT, duration_s=200, ref="r9"
    )
    back = Envelope.from_bytes(env.to_bytes())
    assert back == env
    assert back.kind == "play.reported" and back.uri == TRACK and back.did == ARTIST
    assert back.time == "2026-11-01T12:00:05Z"
    assert back.play == {"id": "p1", "listener": "cookie:xyz", "duration": 200, "ref": "r9"}
    assert back.key == b"cookie:xyz"


def test_unknown_duration_and_ref_are_left_out():
    env = play_reported(play_id="p1", listener=ARTIST, track_uri=TRACK, at=AT, duration_s=None)
    assert env.play == {"id": "p1", "listener": ARTIST}


def test_counted_carries_the_report_plus_window_and_self_flag():
    reported = play_reported(play_id="p1", listener=ARTIST, track_uri=TRACK, at=AT, duration_s=200)
    counted = play_counted(reported, window_end=AT.replace(minute=3), self_play=True)
    back = Envelope.from_bytes(counted.to_bytes())
    assert back.kind == "play.counted" and back.uri == TRACK and back.key == ARTIST.encode()
    assert back.play == {
        "id": "p1",
        "listener": ARTIST,
        "duration": 200,
        "window_end": "2026-11-01T12:03:05Z",
        "self": True,
    }


def test_play_ids_are_unique():
    assert len({new_play_id() for _ in range(1000)}) == 1000


def test_bad_track_uri_is_refused():
    with pytest.raises(ValueError, match="AT-URI"):
        play_reported(play_id="p", listener="l", track_uri="https://x", at=AT, duration_s=1)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b'{"v":1,"kind":"play.reported","did":"d","source":"api","time":"t"}', "play:"),
        (
            b'{"v":1,"kind":"play.reported","did":"d","source":"api","time":"t","play":{"id":"p"}}',
            "play.listener",
        ),
        (
            b'{"v":1,"kind":"play.counted","did":"d","source":"api","time":"t",'
            b'"play":{"id":"","listener":"l"}}',
            "play.id",
        ),
        (
            b'{"v":1,"kind":"play.reported","did":"d","source":"api","time":"t",'
            b'"play":{"id":"p","listener":"l"}}',
            "collection",
        ),
    ],
)
def test_malformed_play_envelopes_are_refused(raw, message):
    with pytest.raises(EnvelopeError, match=message):
        Envelope.from_bytes(raw)
