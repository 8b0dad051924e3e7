"""Reading CAR v1 files (the block bundles in commits and ``getRepo``), verifying each block.

Every block's CID is recomputed from its bytes (sha-256), so a block that does not match
its CID is refused: later steps can trust ``blocks[cid]``.
"""

from __future__ import annotations

import hashlib

import cbrrr
import libipld

__all__ = ["MAX_BLOCK_SIZE", "CarError", "cid_string", "read_car", "read_varint"]

MAX_BLOCK_SIZE = 2 * 1024 * 1024
_SHA256 = 0x12
_CODECS = (0x71, 0x55)  # dag-cbor, raw


class CarError(ValueError):
    """Bytes that are not a well-formed, verified CAR v1."""


def cid_string(cid: bytes | cbrrr.CID) -> str:
    """The base32 string form of a binary CID (libipld: ~15x faster than ``CID.encode``)."""
    return str(libipld.encode_cid(bytes(cid)))


def read_varint(data: bytes | memoryview, pos: int) -> tuple[int, int]:
    """Unsigned LEB128 at ``pos``; returns (value, next position)."""
    value = 0
    shift = 0
    end = len(data)
    while True:
        if pos >= end:
            raise CarError("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise CarError("varint too long")


def _read_cid(data: memoryview, pos: int) -> tuple[bytes, int, bytes]:
    """A binary CIDv1 at ``pos``; returns (cid bytes, next position, digest)."""
    start = pos
    version, pos = read_varint(data, pos)
    if version != 1:
        raise CarError(f"unsupported CID version {version}")
    codec, pos = read_varint(data, pos)
    if codec not in _CODECS:
        raise CarError(f"unsupported CID codec 0x{codec:x}")
    hash_code, pos = read_varint(data, pos)
    size, pos = read_varint(data, pos)
    if hash_code != _SHA256 or size != 32:
        raise CarError("CID hash must be sha2-256 with 32 bytes")
    digest = bytes(data[pos : pos + size])
    if len(digest) != size:
        raise CarError("truncated CID")
    pos += size
    return bytes(data[start:pos]), pos, digest


def read_car(
    raw: bytes, *, max_block_size: int = MAX_BLOCK_SIZE
) -> tuple[list[str], dict[str, bytes]]:
    """Parse a CAR v1: return (root CIDs as strings, blocks keyed by CID string).

    Raises :class:`CarError` on malformed input, oversized blocks or CID mismatches.
    """
    data = memoryview(raw)
    header_len, pos = read_varint(data, 0)
    if header_len == 0 or pos + header_len > len(data):
        raise CarError("truncated CAR header")
    try:
        header = cbrrr.decode_dag_cbor(bytes(data[pos : pos + header_len]))
    except (ValueError, cbrrr.CbrrrDecodeError) as exc:
        raise CarError(f"bad CAR header: {exc}") from None
    if not isinstance(header, dict) or header.get("version") != 1:
        raise CarError("CAR header must be a map with version 1")
    roots_raw = header.get("roots")
    if not isinstance(roots_raw, list) or not all(isinstance(r, cbrrr.CID) for r in roots_raw):
        raise CarError("CAR header roots must be a list of CIDs")
    roots = [cid_string(r) for r in roots_raw if isinstance(r, cbrrr.CID)]
    pos += header_len
    blocks: dict[str, bytes] = {}
    end = len(data)
    while pos < end:
        length, pos = read_varint(data, pos)
        block_end = pos + length
        if block_end > end:
            raise CarError("truncated block")
        cid_bytes, body_start, digest = _read_cid(data, pos)
        body = bytes(data[body_start:block_end])
        if len(body) > max_block_size:
            raise CarError(f"block of {len(body)} bytes exceeds {max_block_size}")
        if hashlib.sha256(body).digest() != digest:
            raise CarError("block does not match its CID")
        blocks[cid_string(cid_bytes)] = body
        pos = block_end
    return roots, blocks
