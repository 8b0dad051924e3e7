"""Decoding ``com.atproto.sync.subscribeRepos`` frames into typed events.

A frame is two DAG-CBOR objects back to back: a header ``{op, t}`` and a body. ``op`` 1 is
a message whose type ``t`` is ``#commit``, ``#sync``, ``#identity``, ``#account`` or
``#info``; ``op`` -1 is an error frame ``{error, message}``.

:func:`peek_commit` is the fast path for the ~99.5% of relay traffic we do not index: it
reads ``seq`` and ``repo`` of a ``#commit`` straight from the canonical DAG-CBOR bytes
(map keys are sorted by length, then bytes: ``ops``, ``rev``, ``seq``, ``repo``, …) and
tells where the op paths lie, so a byte search there decides whether the commit can
matter before anything is decoded. Whatever does not have exactly the expected shape
returns ``None`` and takes the full decode instead, so the fast path is never wrong, only
sometimes not taken.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import cbrrr

from ingest.car import cid_string

__all__ = [
    "AccountEvent",
    "CommitEvent",
    "ErrorFrame",
    "Event",
    "FrameError",
    "IdentityEvent",
    "InfoEvent",
    "Op",
    "SyncEvent",
    "UnknownEvent",
    "decode_frame",
    "peek_commit",
]

MAX_FRAME_SIZE = 5 * 1024 * 1024

COMMIT_HEADER = cbrrr.encode_dag_cbor({"op": 1, "t": "#commit"})
_OPS_AT = len(COMMIT_HEADER) + 1  # after the body's one-byte map header (< 24 keys)
_OPS_KEY = b"\x63ops"
_SEQ_KEY = b"\x63seq"
_REPO_KEY_LONG = b"\x64repo\x78"
_SEQ_REPO = re.compile(
    rb"\x63seq(?:([\x00-\x17])|\x18(.)|\x19(..)|\x1a(....)|\x1b(.{8}))"
    rb"\x64repo(?:([\x60-\x77])|\x78(.))",
    re.DOTALL,
)


class FrameError(ValueError):
    """A frame we cannot decode."""


@dataclass(frozen=True, slots=True)
class Op:
    action: str
    path: str
    cid: str | None
    prev: str | None = None

    @property
    def collection(self) -> str:
        return self.path.partition("/")[0]

    @property
    def rkey(self) -> str:
        return self.path.partition("/")[2]


@dataclass(frozen=True, slots=True)
class CommitEvent:
    seq: int
    repo: str
    rev: str
    since: str | None
    commit: str
    ops: tuple[Op, ...]
    blocks: bytes
    time: str
    too_big: bool = False
    prev_data: str | None = None


@dataclass(frozen=True, slots=True)
class SyncEvent:
    seq: int
    did: str
    rev: str
    blocks: bytes
    time: str


@dataclass(frozen=True, slots=True)
class IdentityEvent:
    seq: int
    did: str
    handle: str | None
    time: str


@dataclass(frozen=True, slots=True)
class AccountEvent:
    seq: int
    did: str
    active: bool
    status: str | None
    time: str


@dataclass(frozen=True, slots=True)
class InfoEvent:
    name: str
    message: str | None


@dataclass(frozen=True, slots=True)
class ErrorFrame:
    error: str
    message: str | None


@dataclass(frozen=True, slots=True)
class UnknownEvent:
    type: str
    seq: int | None


Event = (
    CommitEvent | SyncEvent | IdentityEvent | AccountEvent | InfoEvent | ErrorFrame | UnknownEvent
)


def _str(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str):
        raise FrameError(f"{name}: expected a string")
    return value


def _opt_str(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is not None and not isinstance(value, str):
        raise FrameError(f"{name}: expected a string or null")
    return value


def _int(body: dict[str, Any], name: str) -> int:
    value = body.get(name)
    if not isinstance(value, int) or isinstance(value, bool):
        raise FrameError(f"{name}: expected an integer")
    return value


def _cid(value: object, name: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, cbrrr.CID):
        return cid_string(value)
    raise FrameError(f"{name}: expected a CID link")


def _ops(raw: object) -> tuple[Op, ...]:
    if not isinstance(raw, list):
        raise FrameError("ops: expected a list")
    ops = []
    for item in raw:
        if not isinstance(item, dict):
            raise FrameError("ops: items must be maps")
        action = item.get("action")
        path = item.get("path")
        if not isinstance(action, str) or not isinstance(path, str) or "/" not in path:
            raise FrameError("ops: each needs an action and a collection/rkey path")
        ops.append(
            Op(action, path, _cid(item.get("cid"), "op.cid"), _cid(item.get("prev"), "op.prev"))
        )
    return tuple(ops)


def _split(frame: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
    if len(frame) > MAX_FRAME_SIZE:
        raise FrameError(f"frame of {len(frame)} bytes exceeds {MAX_FRAME_SIZE}")
    try:
        parts = list(cbrrr.decode_multi_dag_cbor_in_violation_of_the_spec(frame))
    except (ValueError, AssertionError, cbrrr.CbrrrDecodeError) as exc:
        raise FrameError(f"undecodable frame: {exc}") from None
    if len(parts) != 2 or not isinstance(parts[0], dict) or not isinstance(parts[1], dict):
        raise FrameError("frame must be a header map followed by a body map")
    return parts[0], parts[1]


def decode_frame(frame: bytes) -> Event:
    """Decode one binary websocket message of ``subscribeRepos``."""
    header, body = _split(frame)
    op = header.get("op")
    if op == -1:
        return ErrorFrame(_str(body, "error"), _opt_str(body, "message"))
    if op != 1:
        raise FrameError(f"unknown frame op {op!r}")
    kind = header.get("t")
    if kind == "#commit":
        blocks = body.get("blocks")
        if not isinstance(blocks, bytes):
            raise FrameError("blocks: expected bytes")
        commit = _cid(body.get("commit"), "commit")
        if commit is None:
            raise FrameError("commit: missing")
        return CommitEvent(
            seq=_int(body, "seq"),
            repo=_str(body, "repo"),
            rev=_str(body, "rev"),
            since=_opt_str(body, "since"),
            commit=commit,
            ops=_ops(body.get("ops")),
            blocks=blocks,
            time=_str(body, "time"),
            too_big=bool(body.get("tooBig", False)),
            prev_data=_cid(body.get("prevData"), "prevData"),
        )
    if kind == "#identity":
        return IdentityEvent(
            _int(body, "seq"), _str(body, "did"), _opt_str(body, "handle"), _str(body, "time")
        )
    if kind == "#account":
        active = body.get("active")
        if not isinstance(active, bool):
            raise FrameError("active: expected a boolean")
        return AccountEvent(
            _int(body, "seq"),
            _str(body, "did"),
            active,
            _opt_str(body, "status"),
            _str(body, "time"),
        )
    if kind == "#sync":
        blocks = body.get("blocks")
        if not isinstance(blocks, bytes):
            raise FrameError("blocks: expected bytes")
        return SyncEvent(
            _int(body, "seq"), _str(body, "did"), _str(body, "rev"), blocks, _str(body, "time")
        )
    if kind == "#info":
        return InfoEvent(_str(body, "name"), _opt_str(body, "message"))
    if not isinstance(kind, str):
        raise FrameError("header t: expected a string")
    seq = body.get("seq")
    return UnknownEvent(kind, seq if isinstance(seq, int) else None)


def peek_commit(frame: bytes) -> tuple[int, str, int] | None:
    """``(seq, repo, ops_end)`` of a canonical ``#commit`` frame, or ``None``.

    ``frame[:ops_end]`` holds the header, the ``ops`` list and ``rev`` (nothing else), so
    an op path that names a collection appears there as plain bytes. ``None`` means: not a
    commit, or not the expected shape; decode it fully with :func:`decode_frame`.
    """
    if not frame.startswith(COMMIT_HEADER) or not frame.startswith(_OPS_KEY, _OPS_AT):
        return None
    # Common shape first (4-byte seq, did of 24..255 chars), checked byte by byte; the
    # regex below covers the rest, and a ``cseq`` inside an op path fails both checks.
    at = frame.find(_SEQ_KEY, _OPS_AT + 4)
    if at > 0 and frame[at + 4] == 0x1A and frame.startswith(_REPO_KEY_LONG, at + 9):
        size = frame[at + 15]
        repo = frame[at + 16 : at + 16 + size]
        if len(repo) == size:
            try:
                return int.from_bytes(frame[at + 5 : at + 9], "big"), repo.decode(), at
            except UnicodeDecodeError:
                return None
    # The first ``seq`` key followed by an unsigned integer and the ``repo`` key: op paths
    # (before it) cannot hold the control bytes that would fake this.
    found = _SEQ_REPO.search(frame, _OPS_AT + 4)
    if found is None:
        return None
    small, one, two, four, eight, short, long = found.groups()
    wide = one or two or four or eight
    seq = small[0] if small is not None else int.from_bytes(wide, "big")
    end = found.end()
    size = short[0] - 0x60 if short is not None else long[0]
    repo = frame[end : end + size]
    if len(repo) != size:
        return None
    try:
        return seq, repo.decode(), found.start()
    except UnicodeDecodeError:
        return None
