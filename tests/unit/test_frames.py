import cbrrr
import pytest

from ingest.car import CarError, read_car
from ingest.commits import CollectionFilter, RecordError, commit_envelopes
from ingest.frames import (
    AccountEvent,
    CommitEvent,
    ErrorFrame,
    FrameError,
    IdentityEvent,
    InfoEvent,
    decode_frame,
)
from tests.factories import (
    account_frame,
    block,
    commit_frame,
    identity_frame,
    make_car,
    track_record,
)

DID = "did:plc:abcdefghijklmnopqrstuvwx"
KEEP = CollectionFilter.of(["fm.plyr.*"])


def test_commit_frame_decodes_to_ops_and_records():
    raw = commit_frame(
        7,
        DID,
        "3lbcd",
        [
            ("create", "fm.plyr.track/3k1", track_record("Hello")),
            ("create", "app.bsky.feed.post/3k2", {"text": "x"}),
        ],
    )
    event = decode_frame(raw)
    assert isinstance(event, CommitEvent)
    assert (event.seq, event.repo, event.rev) == (7, DID, "3lbcd")
    assert [op.path for op in event.ops] == ["fm.plyr.track/3k1", "app.bsky.feed.post/3k2"]
    envelopes = commit_envelopes(event, KEEP, "test")
    assert len(envelopes) == 1
    env = envelopes[0]
    assert env.kind == "record.created"
    assert env.uri == f"at://{DID}/fm.plyr.track/3k1"
    assert env.record is not None and env.record["title"] == "Hello"


def test_commit_without_kept_ops_never_reads_the_car():
    raw = commit_frame(1, DID, "3l", [("create", "app.bsky.feed.like/1", {"a": 1})])
    event = decode_frame(raw)
    assert isinstance(event, CommitEvent)
    broken = CommitEvent(
        **{**{f: getattr(event, f) for f in event.__slots__}, "blocks": b"garbage"}
    )
    assert commit_envelopes(broken, KEEP, "test") == []


def test_delete_op_has_no_record():
    event = decode_frame(commit_frame(2, DID, "3m", [("delete", "fm.plyr.track/3k1", None)]))
    assert isinstance(event, CommitEvent)
    (env,) = commit_envelopes(event, KEEP, "test")
    assert env.kind == "record.deleted" and env.record is None


def test_blob_and_links_come_out_in_json_form():
    blob_cid, _ = block({"audio": 1})
    record = track_record(
        audioBlob={
            "$type": "blob",
            "ref": {"$link": blob_cid.encode()},
            "mimeType": "audio/mpeg",
            "size": 123,
        }
    )
    event = decode_frame(commit_frame(3, DID, "3n", [("create", "fm.plyr.track/a", record)]))
    assert isinstance(event, CommitEvent)
    (env,) = commit_envelopes(event, KEEP, "test")
    assert env.record is not None
    assert env.record["audioBlob"]["ref"] == {"$link": blob_cid.encode()}


def test_identity_account_info_and_error_frames():
    ident = decode_frame(identity_frame(5, DID, "alice.test"))
    assert ident == IdentityEvent(5, DID, "alice.test", "2026-11-01T12:00:00.000Z")
    acct = decode_frame(account_frame(6, DID, False, "deactivated"))
    assert isinstance(acct, AccountEvent) and acct.status == "deactivated" and not acct.active
    info = cbrrr.encode_dag_cbor({"op": 1, "t": "#info"}) + cbrrr.encode_dag_cbor(
        {"name": "OutdatedCursor", "message": "too old"}
    )
    assert decode_frame(info) == InfoEvent("OutdatedCursor", "too old")
    err = cbrrr.encode_dag_cbor({"op": -1}) + cbrrr.encode_dag_cbor(
        {"error": "ConsumerTooSlow", "message": "slow"}
    )
    assert decode_frame(err) == ErrorFrame("ConsumerTooSlow", "slow")


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\xff\xff\xff",
        cbrrr.encode_dag_cbor({"op": 1, "t": "#commit"}),  # header only
        cbrrr.encode_dag_cbor({"op": 1, "t": "#commit"}) + cbrrr.encode_dag_cbor({"seq": 1}),
        cbrrr.encode_dag_cbor({"op": 7}) + cbrrr.encode_dag_cbor({}),
        cbrrr.encode_dag_cbor([1, 2]) + cbrrr.encode_dag_cbor({}),
        commit_frame(1, DID, "3l", [("create", "fm.plyr.track/a", track_record())])[:-20],
        b"\x00" * (6 * 1024 * 1024),
    ],
    ids=[
        "empty",
        "garbage",
        "header-only",
        "missing-fields",
        "bad-op",
        "header-not-map",
        "truncated",
        "oversized",
    ],
)
def test_bad_frames_raise_frame_error(raw):
    with pytest.raises(FrameError):
        decode_frame(raw)


def test_car_refuses_block_that_does_not_match_its_cid():
    cid, data = block({"a": 1})
    car = make_car([cid], [(cid, data[:-1] + b"\x02")])
    with pytest.raises(CarError, match="does not match"):
        read_car(car)


def test_car_refuses_truncation_and_oversized_blocks():
    cid, data = block({"a": "x" * 100})
    car = make_car([cid], [(cid, data)])
    assert read_car(car)[1][cid.encode()] == data
    with pytest.raises(CarError):
        read_car(car[:-5])
    with pytest.raises(CarError, match="exceeds"):
        read_car(car, max_block_size=10)


def test_missing_record_block_is_a_record_error():
    cid, _ = block(track_record())
    event = decode_frame(
        commit_frame(1, DID, "3l", [("create", "fm.plyr.track/a", track_record())])
    )
    assert isinstance(event, CommitEvent)
    empty_car = make_car([cid], [])
    bad = CommitEvent(**{**{f: getattr(event, f) for f in event.__slots__}, "blocks": empty_car})
    with pytest.raises(RecordError, match="not in the commit"):
        commit_envelopes(bad, KEEP, "test")


# --- raw-bytes triage (peek_commit / Triage) ---

from ingest.commits import Triage  # noqa: E402
from ingest.frames import peek_commit  # noqa: E402
from tests.factories import SignedRepo, plc_did, post_record, tid  # noqa: E402


@pytest.mark.parametrize("seq", [0, 5, 23, 24, 255, 256, 70_000, 2**32 + 5, 2**40])
def test_peek_reads_seq_and_repo_like_the_full_decode(seq):
    repo = SignedRepo(plc_did(seq % 7))
    raw = repo.commit_frame(seq, [("create", f"app.bsky.feed.post/{tid(seq)}", post_record(1))])
    peeked = peek_commit(raw)
    event = decode_frame(raw)
    assert peeked is not None and isinstance(event, CommitEvent)
    assert peeked[:2] == (event.seq, event.repo)
    assert b"app.bsky.feed.post/" in raw[: peeked[2]]  # op paths lie before ops_end
    assert b"blocks" not in raw[: peeked[2]]


def test_triage_skips_only_commits_that_cannot_matter():
    triage = Triage(KEEP)
    repo = SignedRepo(plc_did(1))
    post = repo.commit_frame(1, [("create", f"app.bsky.feed.post/{tid(1)}", post_record(1))])
    track = repo.commit_frame(2, [("create", f"fm.plyr.track/{tid(2)}", track_record())])
    mixed = repo.commit_frame(
        3,
        [
            ("create", f"app.bsky.feed.post/{tid(3)}", post_record(3)),
            ("delete", f"fm.plyr.like/{tid(4)}", None),
        ],
    )
    assert triage.skip(post) == (1, repo.did)
    assert triage.skip(track) is None
    assert triage.skip(mixed) is None
    # Text mentioning fm.plyr inside a record (in the CAR, after ops_end) does not matter.
    mention = repo.commit_frame(
        4, [("create", f"app.bsky.feed.post/{tid(5)}", {"text": "listen on fm.plyr.track!"})]
    )
    assert triage.skip(mention) == (4, repo.did)
    # Not commits: decoded in full.
    assert triage.skip(identity_frame(5, DID, "a.test")) is None
    assert triage.skip(b"garbage") is None


def test_triage_is_not_fooled_by_op_paths_that_look_like_keys():
    triage = Triage(KEEP)
    repo = SignedRepo(plc_did(1))
    # A path containing "cseq" and "drepo" text before a kept op: the kept op must be seen.
    raw = repo.commit_frame(
        9,
        [
            ("create", "app.bsky.feed.post/cseqdrepox", post_record(1)),
            ("create", f"fm.plyr.track/{tid(9)}", track_record()),
        ],
    )
    assert triage.skip(raw) is None
    peeked = peek_commit(raw)
    assert peeked is not None and peeked[:2] == (9, repo.did)
