import random

import cbrrr
import pytest

from ingest.car import CarError, read_car
from ingest.commits import CollectionFilter, RecordError, Triage, commit_envelopes
from ingest.frames import (
    COMMIT_HEADER,
    AccountEvent,
    CommitEvent,
    ErrorFrame,
    FrameError,
    IdentityEvent,
    InfoEvent,
    decode_frame,
    peek_commit,
)
from testkit.car import block, make_car
from testkit.frames import account_frame, commit_frame, identity_frame
from testkit.identity import plc_did, tid
from testkit.records import post_record, track_record
from testkit.repos import SignedRepo

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


# --- raw-bytes triage (commit_peek / Triage) ---


LINK = cbrrr.CID.cidv1_dag_cbor_sha256_32_from(b"x")


def raw_commit(
    ops: list[dict[str, cbrrr.DagCborTypes]],
    *,
    seq: int = 1,
    rev: str = "3ke6kg3wk2322",
    repo: str = DID,
) -> bytes:
    """A canonical commit frame with exactly these op maps (no CAR: triage never reads it)."""
    body: dict[str, cbrrr.DagCborTypes] = {
        "ops": list(ops),
        "rev": rev,
        "seq": seq,
        "repo": repo,
        "time": "2026-11-01T12:00:00.000Z",
        "blobs": [],
        "since": None,
        "blocks": b"",
        "commit": LINK,
        "rebase": False,
        "tooBig": False,
    }
    return COMMIT_HEADER + cbrrr.encode_dag_cbor(body)


def op(
    path: str, action: str = "create", *, prev: cbrrr.DagCborTypes = "absent"
) -> dict[str, cbrrr.DagCborTypes]:
    item: dict[str, cbrrr.DagCborTypes] = {
        "action": action,
        "path": path,
        "cid": None if action == "delete" else LINK,
    }
    if prev != "absent":
        item["prev"] = prev
    return item


@pytest.mark.parametrize("seq", [0, 5, 23, 24, 255, 256, 70_000, 2**32 + 5, 2**40, 2**63 - 1])
def test_peek_reads_seq_and_repo_like_the_full_decode(seq):
    repo = SignedRepo(plc_did(seq % 7))
    raw = repo.commit_frame(seq, [("create", f"app.bsky.feed.post/{tid(seq)}", post_record(1))])
    event = decode_frame(raw)
    assert isinstance(event, CommitEvent)
    assert peek_commit(raw) == (event.seq, event.repo)
    assert Triage(KEEP).skip(raw) == (event.seq, event.repo)


@pytest.mark.parametrize(
    "repo",
    ["did:web:a.b", "did:web:music.example.com", "did:plc:" + "x" * 24, "did:web:" + "y" * 300],
)
def test_peek_reads_repos_of_any_length(repo):
    raw = raw_commit([op(f"app.bsky.feed.post/{tid(1)}")], seq=2**33, repo=repo)
    expected = (2**33, repo) if len(repo) < 256 else None  # longer: decoded in full
    assert peek_commit(raw) == Triage(KEEP).skip(raw) == expected
    event = decode_frame(raw)
    assert isinstance(event, CommitEvent) and (event.seq, event.repo) == (2**33, repo)


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
    # Text mentioning fm.plyr inside a record (in the CAR, after the ops) does not matter.
    mention = repo.commit_frame(
        4, [("create", f"app.bsky.feed.post/{tid(5)}", {"text": "listen on fm.plyr.track!"})]
    )
    assert triage.skip(mention) == (4, repo.did)
    # Nor does a path that merely contains the bytes (not a kept collection).
    inside = raw_commit([op("app.bsky.feed.post/fm.plyr.track")], seq=6)
    assert triage.skip(inside) == (6, DID)
    # Not commits: decoded in full.
    assert triage.skip(identity_frame(5, DID, "a.test")) is None
    assert triage.skip(b"garbage") is None
    assert triage.skip(b"") is None


@pytest.mark.parametrize("position", [0, 1, 2, 7, 8, 11])
def test_a_kept_op_anywhere_in_the_list_prevents_the_skip(position):
    triage = Triage(KEEP)
    paths = [f"app.bsky.feed.like/{tid(i)}" for i in range(12)]
    paths[position] = f"fm.plyr.comment/{tid(99)}"
    for count in (position + 1, 12):
        raw = raw_commit([op(p, prev=None) for p in paths[:count]], seq=count)
        assert triage.skip(raw) is None
    # The same lists without the kept op are skipped (up to 8 ops; longer ones decode).
    harmless = raw_commit([op(p, prev=None) for p in paths[:8] if "plyr" not in p], seq=3)
    assert triage.skip(harmless) == (3, DID)


def test_triage_is_not_fooled_by_op_paths_that_look_like_keys():
    triage = Triage(KEEP)
    # Paths that spell the keys that follow the ops (with the right control bytes), so a
    # byte search for "seq"/"repo" would stop inside the first op and miss the second.
    fake_tail = (
        b"\x63rev\x6d3ke6kg3wk2322\x63seq\x1a\x00\x00\x00\x05\x64repo\x78\x20" + DID.encode()
    )
    fake = "app.bsky.feed.post/" + fake_tail.decode("latin-1")
    for first in (fake, "app.bsky.feed.post/cseqdrepox", "app.bsky.feed.post/factionfcreate"):
        raw = raw_commit([op(first, prev=None), op(f"fm.plyr.track/{tid(9)}", prev=None)], seq=9)
        assert triage.skip(raw) is None
        assert peek_commit(raw) == (9, DID)
    # A path whose declared length hides a kept op's bytes is still read exactly.
    long_path = "app.bsky.feed.post/" + "a" * 200 + "fm.plyr.track/x"
    assert triage.skip(raw_commit([op(long_path)], seq=10)) == (10, DID)


def test_unusual_shapes_are_never_skipped_blind():
    triage = Triage(KEEP)
    track_op = op(f"fm.plyr.track/{tid(1)}", prev=None)
    body = cbrrr.encode_dag_cbor({"ops": [track_op], "rev": "3ke6kg3wk2322", "seq": 1, "repo": DID})
    # Header with its keys in another order (not canonical DAG-CBOR).
    swapped = b"\xa2bop\x01atg#commit" + body
    assert triage.skip(swapped) is None
    with pytest.raises(FrameError):
        decode_frame(swapped)
    harmless = op(f"app.bsky.feed.post/{tid(1)}", prev=None)
    for raw in (
        b"\xa2bop\x01atg#commit" + raw_commit([harmless])[len(COMMIT_HEADER) :],
        raw_commit([harmless], rev="3l"),  # a rev that is not a 13 character TID
        raw_commit([{**harmless, "extra": 1}]),  # an op map with another key
        raw_commit([harmless])[:40],  # truncated inside the ops
    ):
        assert triage.skip(raw) is None
    # An op map that declares 4 keys but carries 3 (and the reverse): not read.
    good = raw_commit([op(f"app.bsky.feed.post/{tid(1)}")])
    assert triage.skip(good) == (1, DID)
    assert triage.skip(good.replace(b"\x81\xa3\x63cid", b"\x81\xa4\x63cid", 1)) is None


def test_triage_agrees_with_the_full_decode_on_random_commits():
    triage = Triage(KEEP)
    rng = random.Random(7)
    collections = [
        "app.bsky.feed.post",
        "app.bsky.feed.like",
        "fm.plyr.track",
        "fm.plyr.like",
        "fm.plyrx.track",
        "xfm.plyr.track",
        "app.bsky.graph.follow",
    ]
    skipped = 0
    for n in range(600):
        ops = []
        for _ in range(rng.choice([0, 1, 1, 1, 2, 3, 5, 8, 9])):
            collection = rng.choice(collections) if rng.random() < 0.3 else "app.bsky.feed.post"
            rkey = "".join(
                rng.choice("abcdefghijk234567") for _ in range(rng.choice([1, 13, 40, 230]))
            )
            action = rng.choice(["create", "update", "delete"])
            ops.append(op(f"{collection}/{rkey}", action, prev=rng.choice(["absent", None, LINK])))
        seq = rng.choice([n, 2**31 + n, 2**40 + n])
        raw = raw_commit(ops, seq=seq)
        event = decode_frame(raw)
        assert isinstance(event, CommitEvent)
        verdict = triage.skip(raw)
        if verdict is not None:
            skipped += 1
            assert verdict == (event.seq, event.repo)
            assert not KEEP.wanted(event.ops)
    assert skipped > 300  # the fast path is taken for the common shapes


@pytest.mark.parametrize("seq", [2**63, 2**64 - 1])
def test_a_seq_no_cursor_can_hold_is_refused_by_peek_and_decode(seq):
    """ingest_cursor.cursor is a bigint: such a frame must not be skipped and saved."""
    repo = SignedRepo(plc_did(3))
    raw = repo.commit_frame(seq, [("create", f"app.bsky.feed.post/{tid(1)}", post_record(1))])
    assert peek_commit(raw) is None and Triage(KEEP).skip(raw) is None
    with pytest.raises(FrameError):
        decode_frame(raw)
