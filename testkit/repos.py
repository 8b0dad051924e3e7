"""Signed repos with real MSTs: getRepo CARs and #commit frames with proofs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cbrrr

from testkit.car import block, make_car
from testkit.identity import FIXED_TIME, SigningKey, tid


def mst_layer(key: str) -> int:
    """The MST layer of a key: leading zero bits of sha256(key), counted in pairs."""
    import hashlib

    zeros = 0
    for byte in hashlib.sha256(key.encode()).digest():
        if byte == 0:
            zeros += 8
            continue
        zeros += 8 - byte.bit_length()
        break
    return zeros // 2


def build_mst(entries: dict[str, cbrrr.CID], out: list[tuple[cbrrr.CID, bytes]]) -> cbrrr.CID:
    """Build the MST of ``entries`` (key → record CID); append node blocks to ``out``; root CID."""
    keys = sorted(entries)
    layers = {k: mst_layer(k) for k in keys}
    top = max(layers.values(), default=0)

    def node(items: list[str], layer: int) -> cbrrr.CID:
        left: list[str] = []
        chunks: list[tuple[str, list[str]]] = []
        for key in items:
            if layers[key] == layer:
                chunks.append((key, []))
            elif chunks:
                chunks[-1][1].append(key)
            else:
                left.append(key)
        e: list[cbrrr.DagCborTypes] = []
        previous = b""
        for key, below in chunks:
            raw = key.encode()
            prefix = 0
            while prefix < min(len(raw), len(previous)) and raw[prefix] == previous[prefix]:
                prefix += 1
            e.append(
                {
                    "p": prefix,
                    "k": raw[prefix:],
                    "v": entries[key],
                    "t": node(below, layer - 1) if below else None,
                }
            )
            previous = raw
        data = cbrrr.encode_dag_cbor({"l": node(left, layer - 1) if left else None, "e": e})
        cid = cbrrr.CID.cidv1_dag_cbor_sha256_32_from(data)
        out.append((cid, data))
        return cid

    return node(keys, top)


def signed_commit(did: str, data: cbrrr.CID, rev: str, key: SigningKey) -> tuple[cbrrr.CID, bytes]:
    """A version-3 commit block for MST root ``data``, signed with ``key``."""
    unsigned: dict[str, cbrrr.DagCborTypes] = {
        "did": did,
        "version": 3,
        "data": data,
        "rev": rev,
        "prev": None,
    }
    signature = key.sign(cbrrr.encode_dag_cbor(unsigned))
    data_bytes = cbrrr.encode_dag_cbor({**unsigned, "sig": signature})
    return cbrrr.CID.cidv1_dag_cbor_sha256_32_from(data_bytes), data_bytes


def repo_car(
    did: str,
    records: dict[str, dict[str, Any]],
    key: SigningKey,
    *,
    rev: str | None = None,
) -> bytes:
    """A whole-repo CAR as ``getRepo`` serves it: signed commit root, MST nodes, records.

    ``records`` maps ``collection/rkey`` to the record (atjson form).
    """
    blocks: list[tuple[cbrrr.CID, bytes]] = []
    entries: dict[str, cbrrr.CID] = {}
    for path, value in records.items():
        cid, data = block(value)
        entries[path] = cid
        blocks.append((cid, data))
    mst_blocks: list[tuple[cbrrr.CID, bytes]] = []
    root = build_mst(entries, mst_blocks)
    commit_cid, commit_data = signed_commit(did, root, rev or tid(len(records)), key)
    return make_car([commit_cid], [(commit_cid, commit_data), *mst_blocks, *blocks])


class SignedRepo:
    """One repo that emits signed ``#commit`` frames chaining with ``prevData`` (sync 1.1),
    each carrying a real MST, as a PDS sends them.

    The repo keeps its records' CIDs by path; each commit applies its ops, rebuilds the MST
    (:func:`build_mst`) and puts in the CAR the signed commit, the MST nodes
    that are new in this commit (those on the paths of the changed keys) and the record
    blocks. ``records`` seeds that many older records (likes sharing one CID) so the tree has
    the depth of a lived-in repo (about 5 new nodes per single-op commit at 100).
    """

    def __init__(self, did: str, key: SigningKey | None = None, *, records: int = 0) -> None:
        self.did = did
        self.key = key or SigningKey()
        self.revs = 0
        self.rev: str | None = None
        old, _ = block({"$type": "app.bsky.feed.like", "n": 0})
        self.entries: dict[str, cbrrr.CID] = {
            f"app.bsky.feed.like/{tid(n)}": old for n in range(records)
        }
        nodes: list[tuple[cbrrr.CID, bytes]] = []
        self.data_cid = build_mst(self.entries, nodes)
        self._nodes = {bytes(cid) for cid, _ in nodes}

    def next_rev(self) -> str:
        self.revs += 1
        return tid((1_700_000_000_000_000 << 10) + self.revs * 1024)

    def commit_frame(
        self,
        seq: int,
        ops: Sequence[tuple[str, str, dict[str, Any] | None]],
        *,
        time: str = FIXED_TIME,
        sign_with: SigningKey | None = None,
        prev_data: cbrrr.CID | bool | None = True,
        rev: str | None = None,
        omit_record_blocks: bool = False,
        mst: dict[str, cbrrr.CID | None] | None = None,
        omit_path_node: bool = False,
        every_node: bool = False,
    ) -> bytes:
        """A signed ``#commit`` frame; ``ops`` are (action, collection/rkey, record or None).

        ``sign_with`` forges (another key); ``prev_data`` True chains onto the previous
        commit, a CID claims another one, False/None omits it; ``omit_record_blocks``
        leaves the record blocks out of the CAR. Lies about the tree: ``mst`` overrides
        what the signed MST maps paths to after the ops (a CID, or ``None``: absent), and
        ``omit_path_node`` leaves the deepest new MST node out of the CAR; ``every_node``
        puts every node of the tree in it, not only the new ones (so a lie is in the tree,
        not in missing blocks).
        """
        rev = rev or self.next_rev()
        records: list[tuple[cbrrr.CID, bytes]] = []
        op_list: list[dict[str, Any]] = []
        for action, path, record in ops:
            cid = None
            if record is not None:
                cid, data = block(record)
                if not omit_record_blocks:
                    records.append((cid, data))
                self.entries[path] = cid
            elif action == "delete":
                self.entries.pop(path, None)
            op_list.append({"action": action, "path": path, "cid": cid, "prev": None})
        for path, value in (mst or {}).items():
            if value is None:
                self.entries.pop(path, None)
            else:
                self.entries[path] = value
        nodes: list[tuple[cbrrr.CID, bytes]] = []
        data_cid = build_mst(self.entries, nodes)  # children first, the root last
        new = [(c, d) for c, d in nodes if every_node or bytes(c) not in self._nodes]
        self._nodes = {bytes(cid) for cid, _ in nodes}
        if omit_path_node and new:
            new = new[1:]
        unsigned: dict[str, Any] = {
            "did": self.did,
            "version": 3,
            "data": data_cid,
            "rev": rev,
            "prev": None,
        }
        sig = (sign_with or self.key).sign(cbrrr.encode_dag_cbor(unsigned))
        commit_data = cbrrr.encode_dag_cbor({**unsigned, "sig": sig})
        commit_cid = cbrrr.CID.cidv1_dag_cbor_sha256_32_from(commit_data)
        body: dict[str, Any] = {
            "seq": seq,
            "rebase": False,
            "tooBig": False,
            "repo": self.did,
            "commit": commit_cid,
            "rev": rev,
            "since": self.rev,
            "blocks": make_car([commit_cid], [(commit_cid, commit_data), *new, *records]),
            "ops": op_list,
            "blobs": [],
            "time": time,
        }
        claimed = self.data_cid if prev_data is True else prev_data
        if isinstance(claimed, cbrrr.CID):
            body["prevData"] = claimed
        self.rev, self.data_cid = rev, data_cid
        return cbrrr.encode_dag_cbor({"op": 1, "t": "#commit"}) + cbrrr.encode_dag_cbor(body)
