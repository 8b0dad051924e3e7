import pytest

from kernel.envelope import Envelope, EnvelopeError

DID = "did:plc:abcdefghijklmnopqrstuvwx"


def test_round_trip_keeps_every_field():
    env = Envelope(
        kind="record.created",
        did=DID,
        source="firehose:x",
        time="t",
        seq=3,
        rev="3l",
        collection="fm.plyr.track",
        rkey="a",
        cid="bafy",
        record={"title": "é"},
        backfill=True,
    )
    back = Envelope.from_bytes(env.to_bytes())
    assert back == env
    assert back.uri == f"at://{DID}/fm.plyr.track/a"
    assert env.key == DID.encode()


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"\xff", "not JSON"),
        (b"[]", "JSON object"),
        (b'{"v": 2}', "version"),
        (b'{"v": 1, "kind": "record.exploded"}', "unknown kind"),
        (
            b'{"v": 1, "kind": "record.created", "did": "d", "source": "s", "time": "t"}',
            "collection",
        ),
        (
            b'{"v": 1, "kind": "record.created", "did": "d", "source": "s", "time": "t",'
            b' "collection": "c", "rkey": "r", "rev": "v"}',
            "record",
        ),
        (b'{"v": 1, "kind": "identity.changed", "did": 5, "source": "s", "time": "t"}', "did"),
    ],
)
def test_bad_envelopes_are_refused_with_a_reason(raw, message):
    with pytest.raises(EnvelopeError, match=message):
        Envelope.from_bytes(raw)


def test_label_envelopes_are_keyed_by_subject():
    label = {
        "src": "did:plc:labeler",
        "uri": "at://x/fm.plyr.track/1",
        "val": "porn",
        "cts": "2026-11-01T00:00:00Z",
    }
    env = Envelope(
        kind="label.applied", did="did:plc:labeler", source="labeler", time="t", label=label
    )
    assert env.key == b"at://x/fm.plyr.track/1"
    assert Envelope.from_bytes(env.to_bytes()) == env
    with pytest.raises(EnvelopeError, match=r"label\.val"):
        Envelope.from_bytes(
            b'{"v":1,"kind":"label.applied","did":"d","source":"s","time":"t",'
            b'"label":{"src":"d","uri":"u","cts":"t"}}'
        )


def test_integers_beyond_64_bits_round_trip() -> None:
    # orjson refuses them; the envelope falls back to the standard library both ways.
    envelope = Envelope(
        kind="record.created", did="did:plc:abc", source="test", time="2026-01-01T00:00:00Z",
        rev="3l00", collection="fm.plyr.track", rkey="r1", cid="bafy", record={"n": -(2**64)},
    )  # fmt: skip
    assert Envelope.from_bytes(envelope.to_bytes()).record == {"n": -(2**64)}


def test_fields_a_newer_producer_adds_are_ignored() -> None:
    raw = (
        b'{"v":1,"kind":"identity.changed","did":"did:plc:abc","source":"s",'
        b'"time":"2026-01-01T00:00:00Z","handle":"a.test","shiny":true}'
    )
    envelope = Envelope.from_bytes(raw)
    assert (envelope.kind, envelope.handle) == ("identity.changed", "a.test")
    assert not hasattr(envelope, "shiny")
