"""Decoding ``com.atproto.sync.subscribeRepos`` frames into typed events.

A frame is two DAG-CBOR objects back to back: a header ``{op, t}`` and a body. ``op`` 1 is
a message whose type ``t`` is ``#commit``, ``#sync``, ``#identity``, ``#account`` or
``#info``; ``op`` -1 is an error frame ``{error, message}``.

:func:`commit_peek` is the fast path for the ~99.5% of relay traffic we do not index: one
regular expression parses the canonical DAG-CBOR bytes of a ``#commit`` (map keys are
sorted by length, then bytes: ``ops``, ``rev``, ``seq``, ``repo``, …) from the header to
the ``repo`` key, every op map and every length included, and refuses op paths that
start with a kept collection's prefix; ``seq`` and ``repo`` come from the match. Whatever
does not have exactly the expected shape is not read and takes the full decode instead,
so the fast path is never wrong, only sometimes not taken.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cbrrr

from ingest.car import cid_string
from ingest.errors import FrameError

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
    "commit_peek",
    "decode_frame",
    "peek_commit",
]

MAX_FRAME_SIZE = 5 * 1024 * 1024

COMMIT_HEADER = cbrrr.encode_dag_cbor({"op": 1, "t": "#commit"})


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
    """An ``#info`` frame (also of ``subscribeLabels``: :mod:`ingest.labels`)."""

    name: str
    message: str | None


@dataclass(frozen=True, slots=True)
class ErrorFrame:
    """An error frame (``op: -1``) of either event stream; the server closes after it."""

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
    if "\x00" in value:  # PostgreSQL text cannot hold it (DIDs, handles, revs are stored)
        raise FrameError(f"{name}: holds a NUL character")
    return value


def _opt_str(body: dict[str, Any], name: str) -> str | None:
    if body.get(name) is None:
        return None
    return _str(body, name)


def _int(body: dict[str, Any], name: str) -> int:
    value = body.get(name)
    if not isinstance(value, int) or isinstance(value, bool):
        raise FrameError(f"{name}: expected an integer")
    return value


MAX_SEQ = 2**63 - 1
"""Largest sequence number we take: cursors are stored as PostgreSQL ``bigint``."""


def _seq(body: dict[str, Any]) -> int:
    """The frame's ``seq``: a non-negative integer that fits a stored cursor."""
    value = _int(body, "seq")
    if not 0 <= value <= MAX_SEQ:
        raise FrameError(f"seq: {value} is outside 0..{MAX_SEQ}")
    return value


def _cid(value: object, name: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, cbrrr.CID):
        try:
            return cid_string(value)
        except ValueError as exc:  # a tag-42 link whose bytes are no valid CID
            raise FrameError(f"{name}: {exc}") from None
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
            seq=_seq(body),
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
            _seq(body), _str(body, "did"), _opt_str(body, "handle"), _str(body, "time")
        )
    if kind == "#account":
        active = body.get("active")
        if not isinstance(active, bool):
            raise FrameError("active: expected a boolean")
        return AccountEvent(
            _seq(body),
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
            _seq(body), _str(body, "did"), _str(body, "rev"), blocks, _str(body, "time")
        )
    if kind == "#info":
        return InfoEvent(_str(body, "name"), _opt_str(body, "message"))
    if not isinstance(kind, str):
        raise FrameError("header t: expected a string")
    seq = body.get("seq")
    return UnknownEvent(kind, seq if isinstance(seq, int) else None)


def _text(guard: bytes) -> bytes:
    """Pattern of a CBOR text string of 0..255 bytes, exactly as long as its header says.

    A regular expression cannot count, so each length is its own branch (the usual path
    lengths first); ``guard`` (lookaheads) is checked at the start of the string.
    """
    common = (32, 33, 34, 35, 27, 36, 31, 30, 37, 38)
    order = [*common, *(n for n in range(24, 256) if n not in common)]
    long = b"|".join(re.escape(bytes([n])) + guard + b".{%d}" % n for n in order)
    short = b"|".join(re.escape(bytes([0x60 + n])) + guard + b".{%d}" % n for n in range(24))
    return b"(?:\\x78(?:" + long + b")|" + short + b")"


@functools.lru_cache(maxsize=16)  # a pure function; compiling it takes ~0.1 s
def _commit_pattern(needles: tuple[bytes, ...]) -> re.Pattern[bytes]:
    """The canonical start of a ``#commit`` frame up to the ``repo`` key, byte for byte.

    Header ``{op: 1, t: "#commit"}``; body map whose first keys are ``ops`` (0..8 op maps
    ``{cid, path, [prev,] action}`` with CIDv1 sha-256 links or null), ``rev`` (a 13
    character TID), ``seq`` (any unsigned integer: group 1, with its header byte) and
    ``repo`` (group 2: a 32-character DID such as every ``did:plc``; else group 3: the
    text header). Every length is checked, so a match is an exact parse of those bytes;
    no op path may start with one of ``needles``.
    """
    guard = b"".join(b"(?!" + re.escape(n) + b")" for n in needles)
    cid = rb"(?:\xd8\x2a\x58\x25\x00.{36}|\xf6)"
    path = rb"\x64path" + _text(guard)
    op = (
        rb"(?:\xa4\x63cid" + cid + path + rb"\x64prev" + cid + rb"|\xa3\x63cid" + cid + path + b")"
        rb"\x66action\x66(?:create|update|delete)"
    )
    ops = b"|".join(
        re.escape(bytes([0x80 + count])) + (b"(?:" + op + b"){%d}" % count if count else b"")
        for count in (1, 2, 3, 0, 4, 5, 6, 7, 8)
    )
    return re.compile(
        re.escape(COMMIT_HEADER) + rb"[\xa0-\xb7]\x63ops(?:" + ops + b")"
        rb"\x63rev\x6d.{13}"
        rb"\x63seq(\x1a.{4}|\x1b.{8}|\x19..|\x18.|[\x00-\x17])"
        rb"\x64repo(?:\x78\x20(.{32})|(\x78.|[\x60-\x77]))",
        re.DOTALL,
    )


_SEQ_MASKS = (0, 0, 0xFF, 0xFFFF, 0, 0xFFFF_FFFF, 0, 0, 0, 0xFFFF_FFFF_FFFF_FFFF)
"""By length of the encoded ``seq`` (header byte + value): the mask that drops the header."""


def commit_peek(needles: tuple[bytes, ...] = ()) -> Callable[[bytes], tuple[int, str] | None]:
    """A function reading ``(seq, repo)`` of a ``#commit`` frame from its bytes, undecoded.

    Only frames of the canonical shape (see :func:`_commit_pattern`: what relays send)
    are read; with ``needles``, only those none of whose op paths starts with a needle.
    ``None`` means: not read, decode the frame with :func:`decode_frame`. One regular
    expression match and a few slices: no Python objects for the ops.
    """
    match = _commit_pattern(needles).match
    from_bytes = int.from_bytes
    masks = _SEQ_MASKS

    def peek(frame: bytes) -> tuple[int, str] | None:
        found = match(frame)
        if found is None:
            return None
        raw_seq, plc, head = found.groups()
        seq = from_bytes(raw_seq) & masks[len(raw_seq)] if len(raw_seq) > 1 else raw_seq[0]
        if seq > MAX_SEQ:  # no cursor can hold it: the full decode refuses the frame
            return None
        if plc is None:  # not a 32-character DID: read the length from the text header
            end = found.end()
            size = head[1] if len(head) == 2 else head[0] - 0x60
            plc = frame[end : end + size]
            if len(plc) != size:
                return None
        try:
            return seq, plc.decode()
        except UnicodeDecodeError:
            return None

    return peek


def peek_commit(frame: bytes) -> tuple[int, str] | None:
    """``(seq, repo)`` of a canonical ``#commit`` frame, or ``None`` (see :func:`commit_peek`)."""
    return commit_peek()(frame)
