"""Network scrobbles, pure parts: the record shape check, ``originUri`` → track id, the
matcher (origin, exact name + artist, ambiguous = none), the envelopes ingest builds."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import cbrrr
import pytest

from ingest.commits import SCROBBLES, CollectionFilter, scrobble_envelopes
from ingest.frames import CommitEvent, Op
from kernel.envelope import Envelope
from kernel.ids import track_id
from kernel.plays import (
    Scrobble,
    ScrobbleError,
    origin_track_id,
    parse_scrobble,
    scrobble_envelope,
)
from projectors.base import InvalidEvent
from projectors.plays_scrobble import Candidate, choose_track, scrobble_item

FRONT = "https://plyr.fm"
LISTENER = "did:plc:listener00000000000000000"
ARTIST = "did:plc:artist0000000000000000000"
URI = f"at://{ARTIST}/fm.plyr.track/3kabc"
TID = track_id(URI)


# -- originUri ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "origin",
    [
        f"https://plyr.fm/track/{TID}",
        f"https://plyr.fm/track/{TID}/",
        f"https://plyr.fm/track/{TID}?ref=abc#t=30",
        f"HTTPS://PLYR.FM/track/{TID}",
        f"https://plyr.fm:443/track/{TID}",
        f"  https://plyr.fm/track/{TID}  ",
    ],
)
def test_origin_forms_that_name_our_track(origin: str) -> None:
    assert origin_track_id(origin, FRONT) == TID


@pytest.mark.parametrize(
    "origin",
    [
        f"http://plyr.fm/track/{TID}",  # another scheme
        f"https://plyr.fm:8443/track/{TID}",  # another port
        f"https://plyr.fm.evil.example/track/{TID}",  # a suffix of our host
        f"https://evil.example/plyr.fm/track/{TID}",
        f"https://plyr.fm@evil.example/track/{TID}",  # user-info: the host is evil.example
        f"https://evil@plyr.fm/track/{TID}",  # user-info on our host: refused too
        f"https://plyr.fm/track/{TID}/extra",
        f"https://plyr.fm/track/../track/{TID}",
        "https://plyr.fm/track/abc",
        "https://plyr.fm/track/-1",
        f"https://plyr.fm/track/{1 << 53}",  # not a 53-bit id
        "https://plyr.fm/track/" + "9" * 400,
        f"//plyr.fm/track/{TID}",
        f"javascript:alert(1)//plyr.fm/track/{TID}",
        f"file:///plyr.fm/track/{TID}",
        "https://[::1/track/1",  # unparseable
        "https://plyr.fm:99999/track/1",  # port out of range
        f"https://127.0.0.1/track/{TID}",
        "",
        "\x00",
    ],
)
def test_hostile_or_foreign_origins_are_no_match(origin: str) -> None:
    assert origin_track_id(origin, FRONT) is None


def test_origin_under_a_frontend_path() -> None:
    assert origin_track_id(f"https://x.example/app/track/{TID}", "https://x.example/app") == TID
    assert origin_track_id(f"https://x.example/track/{TID}", "https://x.example/app") is None


# -- the record's shape ---------------------------------------------------------------


def record(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "$type": "fm.teal.feed.play",
        "trackName": "Night Drive",
        "artists": [{"artistName": "Luna Park"}],
        "playedTime": "2026-11-20T10:00:00.000Z",
        "duration": 200,
        "originUri": f"https://plyr.fm/track/{TID}",
        "releaseName": "Roads",
        "musicServiceUri": "https://plyr.fm",
    }
    base.update(fields)
    return {k: v for k, v in base.items() if v is not None}


def test_parse_a_plyr_written_scrobble() -> None:
    s = parse_scrobble(record())
    assert s == Scrobble(
        track_name="Night Drive",
        artist_names=("Luna Park",),
        origin_uri=f"https://plyr.fm/track/{TID}",
        played_time="2026-11-20T10:00:00Z",
        duration_s=200,
        release_name="Roads",
    )


def test_parse_alpha_artist_names_and_offsets() -> None:
    s = parse_scrobble(
        record(artists=None, artistNames=["A", "B"], playedTime="2026-11-20T12:00:00+02:00")
    )
    assert s.artist_names == ("A", "B")
    assert s.played_time == "2026-11-20T10:00:00Z"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"trackName": None}, "trackName"),
        ({"trackName": ""}, "trackName"),
        ({"trackName": 5}, "trackName"),
        ({"trackName": "a\x00b"}, "trackName"),
        ({"trackName": "x" * 3000}, "trackName"),
        ({"artists": "Luna"}, "artists"),
        ({"artists": [{"artistName": 1}]}, "artists"),
        ({"artists": ["Luna"]}, "artists"),
        ({"artists": [{"artistName": "a"}] * 65}, "artists"),
        ({"playedTime": "yesterday"}, "playedTime"),
        ({"playedTime": "2026-11-20T10:00:00"}, "timezone"),
        ({"duration": True}, "duration"),
        ({"duration": -5}, "duration"),
        ({"duration": 10**30}, "duration"),
        ({"originUri": "https://x/" + "a" * 3000}, "originUri"),
        ({"originUri": "https://plyr.fm/\ud800"}, "originUri"),
        ({"originUri": 42}, "originUri"),
    ],
)
def test_malformed_scrobbles_are_refused(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ScrobbleError, match=message):
        parse_scrobble(record(**fields))


# -- the matcher ----------------------------------------------------------------------


def cand(
    uri: str = URI,
    title: str = "Night Drive",
    artist: str = "Luna Park",
    *,
    display: str | None = None,
    handle: str | None = None,
    visible: bool = True,
) -> Candidate:
    return Candidate(uri, ARTIST, track_id(uri), title, artist, display, handle, 180, visible)


OTHER = f"at://{ARTIST}/fm.plyr.track/other"


def test_origin_uri_wins_over_names() -> None:
    s = parse_scrobble(record(trackName="Whatever", artists=[{"artistName": "Nobody"}]))
    assert choose_track(s, [cand(title="Something else")], FRONT) == cand(title="Something else")


def test_origin_of_a_hidden_track_falls_back_to_names() -> None:
    hidden = cand(visible=False)
    s = parse_scrobble(record())
    assert choose_track(s, [hidden], FRONT) is None
    assert choose_track(s, [hidden, cand(OTHER)], FRONT) == cand(OTHER)


def test_exact_name_and_artist_match_ignoring_case() -> None:
    s = parse_scrobble(record(originUri=None, trackName="NIGHT drive"))
    assert choose_track(s, [cand()], FRONT) == cand()
    assert choose_track(s, [cand(title="Night Drive (remix)")], FRONT) is None
    assert choose_track(s, [cand(artist="Luna Parks")], FRONT) is None


def test_artist_matches_by_display_name_or_handle() -> None:
    s = parse_scrobble(record(originUri=None, artists=[{"artistName": "luna.example"}]))
    assert choose_track(s, [cand(artist="LP", handle="luna.example")], FRONT) is not None
    s = parse_scrobble(record(originUri=None, artists=[{"artistName": "Luna P."}]))
    assert choose_track(s, [cand(artist="LP", display="Luna P.")], FRONT) is not None


def test_ambiguous_names_are_no_match() -> None:
    s = parse_scrobble(record(originUri=None))
    assert choose_track(s, [cand(), cand(OTHER)], FRONT) is None
    # one of the two hidden: the other is the only visible one
    assert choose_track(s, [cand(), cand(OTHER, visible=False)], FRONT) == cand()


def test_no_artist_no_name_match() -> None:
    s = parse_scrobble(record(originUri=None, artists=None))
    assert choose_track(s, [cand()], FRONT) is None


def test_foreign_origin_still_matches_by_name() -> None:
    s = parse_scrobble(record(originUri="https://plyr.fm/track/12345"))  # plyr.fm's own ids
    assert choose_track(s, [cand()], FRONT) == cand()


# -- envelopes ------------------------------------------------------------------------


def test_scrobble_envelope_is_keyed_by_listener_and_round_trips() -> None:
    env = scrobble_envelope(
        kind="record.created",
        listener=LISTENER,
        collection="fm.teal.feed.play",
        rkey="3kplay",
        source="firehose:x",
        time="2026-11-20T10:00:05.000Z",
        rev="3krev",
        cid="bafyx",
        record=record(),
    )
    assert env.key == LISTENER.encode()
    back = Envelope.from_bytes(env.to_bytes())
    assert back.uri == f"at://{LISTENER}/fm.teal.feed.play/3kplay"
    item = scrobble_item(back)
    assert item.play_id == back.uri and item.listener == LISTENER and not item.replaces
    assert item.at == datetime(2026, 11, 20, 10, 0, tzinfo=UTC)


def test_played_time_is_no_later_than_the_commit() -> None:
    env = scrobble_envelope(
        kind="record.created",
        listener=LISTENER,
        collection="fm.teal.feed.play",
        rkey="r",
        source="s",
        time="2026-11-20T10:00:05.000Z",
        record=record(playedTime="2030-01-01T00:00:00Z"),
    )
    assert scrobble_item(env).at == datetime(2026, 11, 20, 10, 0, 5, tzinfo=UTC)


def test_a_delete_replaces_and_bad_events_are_invalid() -> None:
    env = scrobble_envelope(
        kind="record.deleted",
        listener=LISTENER,
        collection="fm.teal.feed.play",
        rkey="r",
        source="s",
        time="2026-11-20T10:00:05.000Z",
    )
    item = scrobble_item(env)
    assert item.replaces and item.scrobble is None
    bad = Envelope(
        kind="record.created",
        did=LISTENER,
        source="s",
        time="2026-11-20T10:00:05.000Z",
        collection="fm.teal.feed.play",
        rkey="r",
        rev="3k",
        record={"trackName": "\x00"},
    )
    with pytest.raises(InvalidEvent, match="trackName"):
        scrobble_item(bad)
    with pytest.raises(ValueError):
        scrobble_envelope(
            kind="record.created",
            listener=LISTENER,
            collection="fm.plyr.track",
            rkey="r",
            source="s",
            time="t",
            record={},
        )


def test_ingest_builds_scrobble_envelopes_and_refuses_malformed() -> None:
    good, bad = cbrrr.encode_dag_cbor(record()), cbrrr.encode_dag_cbor(record(trackName=""))
    good_cid, bad_cid = (cbrrr.CID.cidv1_dag_cbor_sha256_32_from(b).encode() for b in (good, bad))
    ops = (
        Op("create", "fm.teal.feed.play/a", good_cid),
        Op("create", "fm.teal.alpha.feed.play/b", bad_cid),
        Op("delete", "fm.teal.feed.play/c", None),
        Op("create", "fm.plyr.track/t", good_cid),
    )
    event = CommitEvent(1, LISTENER, "3krev", None, "bafyc", ops, b"", "2026-11-20T10:00:05Z")
    wanted = SCROBBLES.wanted(ops)
    assert [op.path for op in wanted] == [op.path for op in ops[:3]]
    envelopes, refused = scrobble_envelopes(event, wanted, "src", {good_cid: good, bad_cid: bad})
    assert [(e.kind, e.rkey) for e in envelopes] == [
        ("record.created", "a"),
        ("record.deleted", "c"),
    ]
    assert all(e.did == LISTENER and e.rev == "3krev" for e in envelopes)
    assert len(refused) == 1 and "trackName" in refused[0]


def test_triage_filter_widens_to_scrobbles() -> None:
    keep = CollectionFilter.of(["fm.plyr.*"])
    both = keep.plus(SCROBBLES.exact)
    assert both("fm.teal.feed.play") and both("fm.plyr.track") and not keep("fm.teal.feed.play")
    assert b"fm.teal." in both.needles()


def test_a_scrobble_whose_block_is_missing_or_no_map_is_refused_not_raised() -> None:
    not_map = cbrrr.encode_dag_cbor([1, 2])
    not_map_cid = cbrrr.CID.cidv1_dag_cbor_sha256_32_from(not_map).encode()
    ops = [
        Op("create", "fm.teal.feed.play/a", "bafymissing"),
        Op("update", "fm.teal.feed.play/b", not_map_cid),
        Op("create", "fm.teal.feed.play/c", None),
    ]
    event = CommitEvent(
        1, LISTENER, "3krev", None, "bafyc", tuple(ops), b"", "2026-11-20T10:00:05Z"
    )
    envelopes, refused = scrobble_envelopes(event, ops, "src", {not_map_cid: not_map})
    assert envelopes == []
    assert [("/a" in r, "/b" in r, "/c" in r) for r in refused] == [
        (True, False, False),
        (False, True, False),
        (False, False, True),
    ]
