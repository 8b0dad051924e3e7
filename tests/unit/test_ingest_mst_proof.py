"""MST proofs of a commit's ops: the signed tree must hold what the ops claim, via CAR nodes."""

from __future__ import annotations

import cbrrr
import pytest

from ingest.car import read_car
from ingest.commits import CollectionFilter
from ingest.frames import CommitEvent, Op, decode_frame
from ingest.repo_car import MstNodeMissing, RepoError, find_key
from ingest.verify import KeyCache, VerifyError, check_commit, check_ops
from kernel.config import DEFAULT_COLLECTIONS
from testkit.car import block
from testkit.identity import plc_did, tid
from testkit.records import track_record
from testkit.repos import SignedRepo, build_mst

KEEP = CollectionFilter.of(DEFAULT_COLLECTIONS)
PATH = f"fm.plyr.track/{tid(1)}"


def prove(repo: SignedRepo, raw: bytes) -> CommitEvent:
    """Verify the commit's signature, then prove its kept ops (raises :class:`VerifyError`)."""
    event = decode_frame(raw)
    assert isinstance(event, CommitEvent)
    _, blocks = read_car(event.blocks)
    verified = check_commit(event, blocks, repo.key.did_key, KeyCache())
    wanted = KEEP.wanted(event.ops)
    assert wanted, "the commit should touch a kept collection"
    check_ops(blocks, verified.data_cid, wanted)
    return event


def refusal(repo: SignedRepo, raw: bytes) -> str:
    with pytest.raises(VerifyError) as caught:
        prove(repo, raw)
    return caught.value.reason


def lived_in(n: int = 1) -> SignedRepo:
    repo = SignedRepo(plc_did(n), records=100)
    repo.commit_frame(1, [("create", PATH, track_record("first"))])
    return repo


def test_create_update_and_delete_of_a_real_repo_are_proven() -> None:
    repo = SignedRepo(plc_did(1), records=100)
    event = prove(repo, repo.commit_frame(1, [("create", PATH, track_record("one"))]))
    assert len(read_car(event.blocks)[1]) >= 4, "commit + several MST nodes + the record"
    prove(repo, repo.commit_frame(2, [("update", PATH, track_record("one, edited"))]))
    other = f"fm.plyr.like/{tid(2)}"
    like = {"$type": "fm.plyr.like", "subject": {"uri": "at://x/y/z", "cid": "c"}}
    prove(repo, repo.commit_frame(3, [("create", other, like), ("delete", PATH, None)]))
    prove(repo, repo.commit_frame(4, [("delete", other, None)]))


def test_the_first_record_of_an_empty_repo_is_proven() -> None:
    repo = SignedRepo(plc_did(1))
    prove(repo, repo.commit_frame(1, [("create", PATH, track_record())]))
    prove(repo, repo.commit_frame(2, [("delete", PATH, None)]))


def test_an_op_cid_that_differs_from_the_mst_leaf_is_a_mismatch() -> None:
    repo = lived_in()
    elsewhere, _ = block(track_record("what the tree really holds"))
    raw = repo.commit_frame(2, [("update", PATH, track_record("claimed"))], mst={PATH: elsewhere})
    assert refusal(repo, raw) == "mst_proof_mismatch"


def test_a_created_key_the_mst_lacks_is_a_mismatch() -> None:
    repo = SignedRepo(plc_did(1), records=100)
    raw = repo.commit_frame(
        1, [("create", PATH, track_record())], mst={PATH: None}, every_node=True
    )
    assert refusal(repo, raw) == "mst_proof_mismatch"


def test_a_deleted_key_still_in_the_mst_is_a_mismatch() -> None:
    repo = lived_in()
    raw = repo.commit_frame(
        2, [("delete", PATH, None)], mst={PATH: repo.entries[PATH]}, every_node=True
    )
    assert refusal(repo, raw) == "mst_proof_mismatch"


def test_a_car_without_a_node_on_the_path_is_refused() -> None:
    repo = lived_in()
    raw = repo.commit_frame(2, [("update", PATH, track_record("edit"))], omit_path_node=True)
    assert refusal(repo, raw) == "mst_proof_missing"
    repo = lived_in(2)
    raw = repo.commit_frame(2, [("delete", PATH, None)], omit_path_node=True)
    assert refusal(repo, raw) == "mst_proof_missing"


def test_an_update_without_a_cid_is_a_mismatch() -> None:
    repo = lived_in()
    raw = repo.commit_frame(2, [("update", PATH, track_record("edit"))])
    event = decode_frame(raw)
    assert isinstance(event, CommitEvent)
    _, blocks = read_car(event.blocks)
    data = check_commit(event, blocks, repo.key.did_key, KeyCache()).data_cid
    op = event.ops[0]
    with pytest.raises(VerifyError, match="without a CID") as caught:
        check_ops(blocks, data, [Op(op.action, op.path, None)])
    assert caught.value.reason == "mst_proof_mismatch"


def test_find_key_finds_every_key_and_no_other() -> None:
    entries = {f"fm.plyr.track/{tid(n)}": block({"n": n})[0] for n in range(0, 600, 2)}
    nodes: list[tuple[cbrrr.CID, bytes]] = []
    root = build_mst(entries, nodes)
    assert len(nodes) > 20
    blocks = {cid.encode(): data for cid, data in nodes}
    for key, cid in entries.items():
        assert find_key(blocks, root.encode(), key) == bytes(cid)
    for n in range(1, 600, 10):
        assert find_key(blocks, root.encode(), f"fm.plyr.track/{tid(n)}") is None
    for key in ("", "a", "fm.plyr.track/", "zzz"):
        assert find_key(blocks, root.encode(), key) is None
    del blocks[nodes[0][0].encode()]
    with pytest.raises(MstNodeMissing):
        for key in entries:
            find_key(blocks, root.encode(), key)


def _node(keys: list[bytes], value: cbrrr.CID, left: cbrrr.CID | None = None) -> bytes:
    return cbrrr.encode_dag_cbor(
        {"l": left, "e": [{"p": 0, "k": k, "v": value, "t": None} for k in keys]}
    )


def test_malformed_or_misordered_nodes_are_refused() -> None:
    value, _ = block({"x": 1})
    child = _node([b"fm.plyr.track/z"], value)  # out of the range its parent gives it
    child_cid = cbrrr.CID.cidv1_dag_cbor_sha256_32_from(child)
    root = _node([b"fm.plyr.track/m"], value, left=child_cid)
    root_cid = cbrrr.CID.cidv1_dag_cbor_sha256_32_from(root)
    blocks = {root_cid.encode(): root, child_cid.encode(): child}
    with pytest.raises(RepoError, match="out of order"):
        find_key(blocks, root_cid.encode(), "fm.plyr.track/a")
    reversed_node = _node([b"fm.plyr.track/b", b"fm.plyr.track/a"], value)
    reversed_cid = cbrrr.CID.cidv1_dag_cbor_sha256_32_from(reversed_node)
    with pytest.raises(RepoError, match="out of order"):
        find_key({reversed_cid.encode(): reversed_node}, reversed_cid.encode(), "fm.plyr.track/c")
    garbage = cbrrr.encode_dag_cbor({"e": "no"})
    garbage_cid = cbrrr.CID.cidv1_dag_cbor_sha256_32_from(garbage)
    ops = [Op("delete", "fm.plyr.track/a", None)]
    with pytest.raises(VerifyError) as caught:
        check_ops({garbage_cid.encode(): garbage}, garbage_cid.encode(), ops)
    assert caught.value.reason == "mst_proof_malformed"
