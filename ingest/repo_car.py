"""Reading a whole repository (a ``com.atproto.sync.getRepo`` CAR): its commit and records.

The CAR's root is the signed commit ``{did, version: 3, data, rev, prev, sig}``; ``data``
is the root of the Merkle Search Tree (MST) that maps ``collection/rkey`` keys to record
CIDs. An MST node is ``{l: CID | null, e: [{p, k, v, t}]}``: ``l`` is the subtree of keys
before the first entry; each entry's key is the first ``p`` bytes of the previous entry's
key followed by ``k``; ``v`` is the record CID; ``t`` the subtree of keys between this
entry and the next. An in-order walk (``l``, then each entry followed by its ``t``) yields
the keys in sorted order, which is checked.

Subtrees whose key range cannot hold a kept collection are not visited, and only kept
records are decoded. Every block's CID is verified on reading (:func:`read_blocks`), so
given a verified commit signature the records are authentic. Malformed input raises
:class:`RepoError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import cbrrr
import libipld

from ingest.car import read_blocks as read_car_blocks
from ingest.commits import CollectionFilter
from ingest.errors import CarError, MstNodeMissing, RepoError

__all__ = [
    "MstNode",
    "MstNodeMissing",
    "Repo",
    "RepoCommit",
    "RepoError",
    "RepoRecord",
    "decode_node",
    "find_key",
    "read_blocks",
    "read_commit",
    "read_repo",
    "walk_mst",
]

_MAX_DEPTH = 128


@dataclass(frozen=True, slots=True)
class RepoCommit:
    """The signed commit at the root of a repo."""

    cid: str
    did: str
    rev: str
    data: str
    """CID of the MST root."""
    sig: bytes
    unsigned: bytes
    """DAG-CBOR of the commit without ``sig``: the bytes the signature covers."""


class RepoRecord(NamedTuple):
    """One record of a repo."""

    collection: str
    rkey: str
    cid: str
    record: dict[str, Any]
    """The record in atjson form (blobs as ``{"$type": "blob", "ref": {"$link": …}}``)."""


@dataclass(frozen=True, slots=True)
class Repo:
    """A repo's commit and the records of the collections asked for, in key order."""

    commit: RepoCommit
    records: list[RepoRecord]


def read_blocks(raw: bytes) -> tuple[list[bytes], dict[bytes, bytes]]:
    """A CAR v1's roots and blocks, keyed by binary CID; each block checked against its CID.

    :func:`ingest.car.read_blocks` (CIDs are not turned into strings: base32 costs more
    than hashing, and a repo has a block per record and per MST node).
    """
    try:
        return read_car_blocks(raw)
    except CarError as exc:
        raise RepoError(f"bad CAR: {exc}") from None


def read_commit(blocks: dict[bytes, bytes], root: bytes) -> RepoCommit:
    """The commit stored in block ``root``; raises :class:`RepoError` if it is not one."""
    raw = blocks.get(root)
    if raw is None:
        raise RepoError(f"commit block {libipld.encode_cid(root)} is missing")
    try:
        commit = cbrrr.decode_dag_cbor(raw)
    except (ValueError, cbrrr.CbrrrDecodeError) as exc:
        raise RepoError(f"commit is not DAG-CBOR: {exc}") from None
    if not isinstance(commit, dict):
        raise RepoError("commit is not a map")
    did, rev, data, sig = (commit.get(k) for k in ("did", "rev", "data", "sig"))
    if commit.get("version") != 3:
        raise RepoError(f"unsupported commit version {commit.get('version')!r}")
    if not isinstance(did, str) or not isinstance(rev, str):
        raise RepoError("commit did/rev must be strings")
    if not isinstance(data, cbrrr.CID) or not isinstance(sig, bytes):
        raise RepoError("commit data must be a CID and sig bytes")
    unsigned = cbrrr.encode_dag_cbor({k: v for k, v in commit.items() if k != "sig"})
    return RepoCommit(libipld.encode_cid(root), did, rev, data.encode(), sig, unsigned)


@dataclass(frozen=True, slots=True)
class _Ranges:
    """Half-open key ranges ``[start, end)`` that hold kept records (``None``: keep all)."""

    spans: tuple[tuple[str, str], ...] | None

    @classmethod
    def of(cls, keep: CollectionFilter | None) -> _Ranges:
        if keep is None:
            return cls(None)
        spans = [(f"{c}/", f"{c}0") for c in keep.exact]  # "0" sorts right after "/"
        spans += [
            (p, p[:-1] + chr(ord(p[-1]) + 1)) if p else ("", "\U0010ffff") for p in keep.prefixes
        ]
        return cls(tuple(spans))

    def meets(self, low: str | None, high: str | None) -> bool:
        """Whether keys strictly between ``low`` and ``high`` can fall in a kept range."""
        if self.spans is None:
            return True
        return any(
            (high is None or start < high) and (low is None or end > low)
            for start, end in self.spans
        )


class MstNode(NamedTuple):
    """One decoded MST node: binary CIDs, full keys (prefix compression undone)."""

    left: bytes | None
    """The subtree of keys before the first entry."""
    keys: list[str]
    values: list[bytes]
    """Record CIDs, one per key."""
    trees: list[bytes | None]
    """Per key, the subtree of keys between it and the next key."""


def decode_node(raw: bytes) -> MstNode:
    """Decode the bytes of an MST node; raises :class:`RepoError` (no node CID in the message).

    Only the shape is checked here (links, keys, prefix lengths, UTF-8), not key order.
    """
    link = cbrrr.CID
    try:
        node = cbrrr.decode_dag_cbor(raw)
    except (ValueError, cbrrr.CbrrrDecodeError) as exc:
        raise RepoError(f"is not DAG-CBOR: {exc}") from None
    if not isinstance(node, dict) or not isinstance(node.get("e"), list):
        raise RepoError("is not a node")
    entries: list[Any] = node["e"]  # type: ignore[assignment]
    keys: list[str] = []
    values: list[bytes] = []
    trees: list[bytes | None] = []
    add_key, add_value, add_tree = keys.append, values.append, trees.append
    previous = b""
    for entry in entries:
        if not isinstance(entry, dict):
            raise RepoError("has a bad entry")
        prefix, suffix = entry.get("p"), entry.get("k")
        if not isinstance(prefix, int) or not isinstance(suffix, bytes):
            raise RepoError("has a bad entry key")
        if prefix < 0 or prefix > len(previous):
            raise RepoError("has a bad key prefix length")
        previous = previous[:prefix] + suffix if prefix else suffix
        try:
            key = previous.decode()
        except UnicodeDecodeError:
            raise RepoError("has a non-UTF-8 key") from None
        add_key(key)
        value, tree = entry.get("v"), entry.get("t")
        if not isinstance(value, link):
            raise RepoError(f"entry {key!r} has no record CID")
        add_value(value.cid_bytes)
        if tree is None:
            add_tree(None)
        elif isinstance(tree, link):
            add_tree(tree.cid_bytes)
        else:
            raise RepoError(f"entry {key!r} has a bad subtree link")
    left = node.get("l")
    if left is None:
        return MstNode(None, keys, values, trees)
    if not isinstance(left, link):
        raise RepoError("has a bad left link")
    return MstNode(left.cid_bytes, keys, values, trees)


def _node_at(raw: bytes | None, cid: bytes | str) -> MstNode:
    """:func:`decode_node` of block ``cid`` (``None``: not among the blocks), errors named."""
    if raw is None:
        name = cid if isinstance(cid, str) else libipld.encode_cid(cid)
        raise MstNodeMissing(f"MST node {name} is missing")
    try:
        return decode_node(raw)
    except RepoError as exc:
        name = cid if isinstance(cid, str) else libipld.encode_cid(cid)
        raise RepoError(f"MST node {name} {exc}") from None


def walk_mst(
    blocks: dict[bytes, bytes], root: bytes, keep: CollectionFilter | None = None
) -> list[tuple[str, bytes]]:
    """``(key, binary record CID)`` pairs of the MST at ``root`` in key order.

    With ``keep``, subtrees that cannot hold a kept collection are skipped (their keys
    are not listed; other keys may still be). Raises :class:`RepoError`.
    """
    ranges = _Ranges.of(keep)
    out: list[tuple[str, bytes]] = []
    append = out.append

    # Plain recursion appending to one list: a generator chain would pay per level per key.
    def visit(cid: bytes, low: str | None, high: str | None, depth: int) -> None:
        if depth > _MAX_DEPTH:
            raise RepoError("MST deeper than any real repo")
        left, keys, values, trees = _node_at(blocks.get(cid), cid)
        if left is not None:
            first = keys[0] if keys else high
            if ranges.meets(low, first):
                visit(left, low, first, depth + 1)
        last = len(keys) - 1
        for index, key in enumerate(keys):
            if out and key <= out[-1][0]:
                raise RepoError(f"MST keys out of order at {key!r}")
            append((key, values[index]))
            tree = trees[index]
            if tree is not None:
                after = keys[index + 1] if index < last else high
                if ranges.meets(key, after):
                    visit(tree, key, after, depth + 1)

    visit(root, None, None, 0)
    return out


def find_key(blocks: dict[str, bytes], root: str, key: str) -> bytes | None:
    """The binary record CID that the MST at ``root`` maps ``key`` to, or ``None`` if absent.

    A proof of inclusion or exclusion: only the nodes on the search path of ``key`` are read
    (``blocks`` keyed by CID string, as in a commit's CAR). A missing node raises
    :class:`MstNodeMissing`; a malformed node, or keys out of order or outside the range
    the parent gives the node, raise :class:`RepoError`.
    """
    cid = root
    low: str | None = None  # the keys of the node at cid all lie strictly between these
    high: str | None = None
    for _ in range(_MAX_DEPTH + 1):
        below, keys, values, trees = _node_at(blocks.get(cid), cid)
        sub_low, sub_high = low, high
        previous = low
        for index, here in enumerate(keys):
            if (previous is not None and here <= previous) or (high is not None and here >= high):
                raise RepoError(f"MST keys out of order at {here!r} in node {cid}")
            if here == key:
                return values[index]
            if here > key:
                sub_high = here
                break
            below, sub_low, previous = trees[index], here, here
        if below is None:
            return None
        cid, low, high = libipld.encode_cid(below), sub_low, sub_high
    raise RepoError("MST deeper than any real repo")


def read_repo(raw: bytes, keep: CollectionFilter | None = None) -> Repo:
    """Parse a ``getRepo`` CAR: the commit and the (kept) records, decoded.

    Raises :class:`RepoError` for a bad CAR, a bad commit, a malformed MST, a key that is
    not ``collection/rkey``, or a missing or undecodable record block.
    """
    roots, blocks = read_blocks(raw)
    if not roots:
        raise RepoError("CAR has no root")
    commit = read_commit(blocks, roots[0])
    records: list[RepoRecord] = []
    append = records.append
    decode = cbrrr.decode_dag_cbor
    cid_string = libipld.encode_cid
    kept: dict[str, bool] = {}  # by collection: a repo has a handful of them
    for key, cid in walk_mst(blocks, cbrrr.CID.decode(commit.data).cid_bytes, keep):
        collection, slash, rkey = key.partition("/")
        if not slash or not collection or not rkey or "/" in rkey:
            raise RepoError(f"MST key {key!r} is not collection/rkey")
        wanted = kept.get(collection)
        if wanted is None:
            wanted = kept[collection] = keep is None or keep(collection)
        if not wanted:
            continue
        data = blocks.get(cid)
        if data is None:
            raise RepoError(f"record block {cid_string(cid)} for {key} is missing")
        try:
            record = decode(data, atjson_mode=True)
        except (ValueError, cbrrr.CbrrrDecodeError) as exc:
            raise RepoError(f"record {key} is not DAG-CBOR: {exc}") from None
        if not isinstance(record, dict):
            raise RepoError(f"record {key} is not a map")
        append(RepoRecord(collection, rkey, cid_string(cid), record))
    return Repo(commit, records)
