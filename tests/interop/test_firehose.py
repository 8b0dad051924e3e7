"""Firehose commit-proof vectors (``vectors/firehose/``) and MST key heights (``vectors/mst/``).

Each proof vector gives a repo's keys (all mapped to one record CID), a commit's adds and
deletes, the MST roots before and after, and the blocks a sync-1.1 commit must carry to
prove it. We never build MSTs (a repo's PDS does): the trees here come from the test
factory's builder, and the roots it computes must be the vector's. What is ours is
:func:`ingest.verify.check_ops`: given *only* the proof blocks it must prove every add
and delete against the new root, and refuse what the tree does not say.
"""

from __future__ import annotations

from typing import Any

import cbrrr
import pytest

from ingest.frames import Op
from ingest.verify import VerifyError, check_ops
from testkit.repos import build_mst, mst_layer
from tests.interop.vectors import lines, load

PROOFS = [
    pytest.param(case, id=case["comment"]) for case in load("firehose/commit-proof-fixtures.json")
]


def tree(keys: set[str], leaf: cbrrr.CID) -> tuple[str, dict[str, bytes]]:
    blocks: list[tuple[cbrrr.CID, bytes]] = []
    root = build_mst(dict.fromkeys(keys, leaf), blocks)
    return root.encode(), {cid.encode(): data for cid, data in blocks}


def ops(case: dict[str, Any]) -> list[Op]:
    return [Op("delete", key, None) for key in case["dels"] if key not in case["adds"]] + [
        Op("create", key, case["leafValue"]) for key in case["adds"]
    ]


@pytest.mark.parametrize("case", PROOFS)
def test_commit_proof(case: dict[str, Any]) -> None:
    leaf = cbrrr.CID.decode(case["leafValue"])
    before = set(case["keys"])
    after = (before - set(case["dels"])) | set(case["adds"])
    assert tree(before, leaf)[0] == case["rootBeforeCommit"]
    root, blocks = tree(after, leaf)
    assert root == case["rootAfterCommit"]
    proof = {cid: blocks[cid] for cid in case["blocksInProof"]}
    assert len(proof) == len(case["blocksInProof"])  # every proof block is in the new tree

    check_ops(proof, root, ops(case))


@pytest.mark.parametrize("case", PROOFS)
def test_commit_proof_refuses_what_the_tree_does_not_say(case: dict[str, Any]) -> None:
    root, blocks = tree(
        (set(case["keys"]) - set(case["dels"])) | set(case["adds"]),
        cbrrr.CID.decode(case["leafValue"]),
    )
    proof = {cid: blocks[cid] for cid in case["blocksInProof"]}
    added = case["adds"][0]
    # An add claimed with another CID, and the same add claimed as a delete.
    other = "bafyreiclp443lavogvhj3d2ob2cxbfuscni2k5jk7bebjzg7khl3esabwq"
    for op in (Op("create", added, other), Op("delete", added, None)):
        with pytest.raises(VerifyError) as refused:
            check_ops(proof, root, [op])
        assert refused.value.reason == "mst_proof_mismatch"


HEIGHTS = [
    pytest.param(case["key"], case["height"], id=repr(case["key"]))
    for case in load("mst/key_heights.json")
]


@pytest.mark.parametrize(("key", "height"), HEIGHTS)
def test_key_height(key: str, height: int) -> None:
    # The builder the proof tests rely on; our own code only reads trees.
    assert mst_layer(key) == height


def test_example_keys_are_at_the_height_they_are_named_for() -> None:
    keys = lines("mst/example_keys.txt")
    assert len(keys) > 100
    assert all(mst_layer(key) == int(key[1]) for key in keys)


@pytest.mark.skip(
    reason="common_prefix.json tests a helper of MST construction; we never build "
    "MST nodes, and reading them only applies the stored prefix lengths"
)
def test_common_prefix() -> None:
    """``mst/common_prefix.json``."""
