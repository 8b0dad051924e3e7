"""subscribeRepos / subscribeLabels frames: header plus body, as a relay sends them."""

from __future__ import annotations

from typing import Any

import cbrrr

from testkit.car import block, make_car


def frame(kind: str, body: dict[str, Any]) -> bytes:
    return cbrrr.encode_dag_cbor({"op": 1, "t": kind}) + cbrrr.encode_dag_cbor(body)


def commit_frame(
    seq: int,
    repo: str,
    rev: str,
    ops: list[tuple[str, str, dict[str, Any] | None]],
    *,
    time: str = "2026-11-01T12:00:00.000Z",
    extra_blocks: int = 0,
) -> bytes:
    """A ``#commit`` frame; ``ops`` are (action, collection/rkey, record or None)."""
    blocks: list[tuple[cbrrr.CID, bytes]] = []
    op_list: list[dict[str, Any]] = []
    for action, path, record in ops:
        cid = None
        if record is not None:
            cid, data = block(record)
            blocks.append((cid, data))
        op_list.append({"action": action, "path": path, "cid": cid})
    for i in range(extra_blocks):  # stand-ins for MST nodes
        blocks.append(block({"e": [], "l": None, "n": i}))
    data_cid, _ = block({"n": seq})
    commit_cid, commit_data = block(
        {
            "did": repo,
            "version": 3,
            "data": {"$link": data_cid.encode()},
            "rev": rev,
            "prev": None,
            "sig": {"$bytes": "AAAA"},
        }
    )
    blocks.insert(0, (commit_cid, commit_data))
    body = {
        "seq": seq,
        "rebase": False,
        "tooBig": False,
        "repo": repo,
        "commit": commit_cid,
        "rev": rev,
        "since": None,
        "blocks": make_car([commit_cid], blocks),
        "ops": op_list,
        "blobs": [],
        "time": time,
    }
    return frame("#commit", body)


def identity_frame(seq: int, did: str, handle: str | None) -> bytes:
    return frame(
        "#identity", {"seq": seq, "did": did, "handle": handle, "time": "2026-11-01T12:00:00.000Z"}
    )


def account_frame(seq: int, did: str, active: bool, status: str | None = None) -> bytes:
    body: dict[str, Any] = {
        "seq": seq,
        "did": did,
        "active": active,
        "time": "2026-11-01T12:00:00.000Z",
    }
    if status is not None:
        body["status"] = status
    return frame("#account", body)


def labels_frame(seq: int, labels: list[dict[str, Any]]) -> bytes:
    """A standard CBOR ``#labels`` frame of ``subscribeLabels``."""
    return frame("#labels", {"seq": seq, "labels": labels})


def info_frame(name: str, message: str | None = None) -> bytes:
    return cbrrr.encode_dag_cbor({"op": 1, "t": "#info"}) + cbrrr.encode_dag_cbor(
        {"name": name, "message": message}
    )


def error_frame(error: str, message: str | None = None) -> bytes:
    return cbrrr.encode_dag_cbor({"op": -1}) + cbrrr.encode_dag_cbor(
        {"error": error, "message": message}
    )
