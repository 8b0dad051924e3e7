"""Reading getRepo CARs: the commit, the MST walk in key order, collection pruning, bad input."""

from __future__ import annotations

import cbrrr
import pytest
from atproto_crypto.verify import verify_signature

from ingest.commits import CollectionFilter
from ingest.repo_car import RepoError, read_blocks, read_repo, walk_mst
from testkit.car import block, make_car
from testkit.identity import SigningKey, did_for, tid
from testkit.records import track_record
from testkit.repos import build_mst, mst_layer, repo_car, signed_commit

DID = did_for("alice")


def records(n: int, collection: str = "fm.plyr.track") -> dict[str, dict[str, object]]:
    return {f"{collection}/{tid(i)}": track_record(f"song {i}") for i in range(n)}


def test_walk_yields_every_key_in_order_for_a_multi_layer_tree() -> None:
    key = SigningKey()
    recs = {**records(300), **records(200, "app.bsky.feed.like")}
    assert max(mst_layer(k) for k in recs) >= 2, "the fixture should make a tree of 3+ layers"
    roots, blocks = read_blocks(repo_car(DID, recs, key))
    commit = cbrrr.decode_dag_cbor(blocks[roots[0]])
    assert isinstance(commit, dict) and isinstance(commit["data"], cbrrr.CID)
    keys = [k for k, _ in walk_mst(blocks, commit["data"].cid_bytes)]
    assert keys == sorted(recs)


def test_read_repo_returns_records_commit_and_a_verifiable_signature() -> None:
    key = SigningKey()
    recs = records(50)
    repo = read_repo(repo_car(DID, recs, key, rev=tid(999)))
    assert repo.commit.did == DID
    assert repo.commit.rev == tid(999)
    assert [f"{r.collection}/{r.rkey}" for r in repo.records] == sorted(recs)
    first = repo.records[0]
    assert first.record == recs[f"{first.collection}/{first.rkey}"]
    assert first.cid == block(first.record)[0].encode()
    assert verify_signature(key.did_key, repo.commit.unsigned, repo.commit.sig)
    assert not verify_signature(SigningKey().did_key, repo.commit.unsigned, repo.commit.sig)


def test_keep_filter_skips_other_collections() -> None:
    recs = {**records(40), **records(400, "app.bsky.feed.post"), **records(30, "fm.plyr.like")}
    car = repo_car(DID, recs, SigningKey())
    kept = read_repo(car, CollectionFilter.of(["fm.plyr.*"]))
    assert {r.collection for r in kept.records} == {"fm.plyr.track", "fm.plyr.like"}
    assert len(kept.records) == 70
    exact = read_repo(car, CollectionFilter.of(["fm.plyr.like"]))
    assert len(exact.records) == 30
    assert len(read_repo(car).records) == 470


def test_empty_repo_has_no_records() -> None:
    repo = read_repo(repo_car(DID, {}, SigningKey()))
    assert repo.records == []


def test_blob_refs_come_out_in_atjson_form() -> None:
    blob_cid = block({"x": 1})[0].encode()
    rec = track_record(
        audioBlob={"$type": "blob", "ref": {"$link": blob_cid}, "mimeType": "audio/mpeg", "size": 3}
    )
    (record,) = read_repo(repo_car(DID, {"fm.plyr.track/3abc": rec}, SigningKey())).records
    assert record.record["audioBlob"]["ref"] == {"$link": blob_cid}


def _car_with_root_node(node: cbrrr.DagCborTypes, extra: list[tuple[cbrrr.CID, bytes]]) -> bytes:
    data = cbrrr.encode_dag_cbor(node)
    root = cbrrr.CID.cidv1_dag_cbor_sha256_32_from(data)
    commit_cid, commit = signed_commit(DID, root, tid(1), SigningKey())
    return make_car([commit_cid], [(commit_cid, commit), (root, data), *extra])


def test_out_of_order_keys_are_rejected() -> None:
    rec_cid, rec = block(track_record())
    node: cbrrr.DagCborTypes = {
        "l": None,
        "e": [
            {"p": 0, "k": b"fm.plyr.track/b", "v": rec_cid, "t": None},
            {"p": 14, "k": b"a", "v": rec_cid, "t": None},
        ],
    }
    with pytest.raises(RepoError, match="out of order"):
        read_repo(_car_with_root_node(node, [(rec_cid, rec)]))


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"p": 0, "k": b"no-slash", "t": None}, "collection/rkey"),
        ({"p": 5, "k": b"x/y", "t": None}, "prefix length"),
        ({"p": 0, "k": b"\xff\xfe/a", "t": None}, "UTF-8"),
        ({"p": 0, "k": "str", "t": None}, "bad entry key"),
    ],
)
def test_malformed_entries_are_rejected(entry: dict[str, cbrrr.DagCborTypes], message: str) -> None:
    rec_cid, rec = block(track_record())
    node: cbrrr.DagCborTypes = {"l": None, "e": [{**entry, "v": rec_cid}]}
    with pytest.raises(RepoError, match=message):
        read_repo(_car_with_root_node(node, [(rec_cid, rec)]))


def test_missing_blocks_are_rejected() -> None:
    rec_cid, rec = block(track_record())
    entries = {"fm.plyr.track/a": rec_cid}
    nodes: list[tuple[cbrrr.CID, bytes]] = []
    root = build_mst(entries, nodes)
    commit_cid, commit = signed_commit(DID, root, tid(1), SigningKey())
    without_record = make_car([commit_cid], [(commit_cid, commit), *nodes])
    with pytest.raises(RepoError, match="record block"):
        read_repo(without_record)
    without_root = make_car([commit_cid], [(commit_cid, commit), (rec_cid, rec)])
    with pytest.raises(RepoError, match="MST node"):
        read_repo(without_root)
    with pytest.raises(RepoError, match="commit block"):
        read_repo(make_car([commit_cid], [(rec_cid, rec)]))


@pytest.mark.parametrize("raw", [b"", b"\x05garbage", repo_car(DID, records(3), SigningKey())[:-7]])
def test_garbage_and_truncated_cars_are_rejected(raw: bytes) -> None:
    with pytest.raises(RepoError):
        read_repo(raw)


def test_a_commit_that_is_not_version_3_is_rejected() -> None:
    rec_cid, rec = block({"version": 2, "did": DID})
    with pytest.raises(RepoError, match="version"):
        read_repo(make_car([rec_cid], [(rec_cid, rec)]))
