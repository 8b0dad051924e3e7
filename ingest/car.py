"""Reading CAR v1 files (the block bundles in commits and ``getRepo``), verifying each block.

Every block's CID is recomputed from its bytes (sha-256), so a block that does not match
its CID is refused: later steps can trust ``blocks[cid]``.
"""

from __future__ import annotations

import hashlib

import cbrrr
import libipld

from ingest.errors import CarError

__all__ = ["MAX_BLOCK_SIZE", "CarError", "cid_string", "read_blocks", "read_car", "read_varint"]

MAX_BLOCK_SIZE = 2 * 1024 * 1024
_CID_PREFIXES = (b"\x01\x71\x12\x20", b"\x01\x55\x12\x20")  # v1, dag-cbor|raw, sha2-256, 32


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


def read_blocks(
    raw: bytes, *, max_block_size: int = MAX_BLOCK_SIZE
) -> tuple[list[bytes], dict[bytes, bytes]]:
    """Parse a CAR v1: return (root CIDs, blocks), both as binary CIDs.

    Every CID must be CIDv1 dag-cbor or raw with a sha2-256 digest (what atproto uses), and
    every block must hash to its CID. Raises :class:`CarError` on malformed input,
    oversized blocks or CID mismatches.
    """
    raw = bytes(raw)
    header_len, pos = read_varint(raw, 0)
    if header_len == 0 or pos + header_len > len(raw):
        raise CarError("truncated CAR header")
    try:
        header = cbrrr.decode_dag_cbor(raw[pos : pos + header_len])
    except (ValueError, cbrrr.CbrrrDecodeError) as exc:
        raise CarError(f"bad CAR header: {exc}") from None
    if not isinstance(header, dict) or header.get("version") != 1:
        raise CarError("CAR header must be a map with version 1")
    roots_raw = header.get("roots")
    if not isinstance(roots_raw, list) or not all(isinstance(r, cbrrr.CID) for r in roots_raw):
        raise CarError("CAR header roots must be a list of CIDs")
    roots = [r.cid_bytes for r in roots_raw if isinstance(r, cbrrr.CID)]
    pos += header_len
    blocks: dict[bytes, bytes] = {}
    end = len(raw)
    sha256 = hashlib.sha256
    while pos < end:
        # Section length: a varint, of one or two bytes for any block atproto really has.
        length = raw[pos]
        if length < 0x80:
            pos += 1
        elif pos + 1 < end and raw[pos + 1] < 0x80:
            length = (length & 0x7F) | raw[pos + 1] << 7
            pos += 2
        else:
            length, pos = read_varint(raw, pos)
        block_end = pos + length
        if block_end > end or length < 36:
            raise CarError("truncated block")
        if not raw.startswith(_CID_PREFIXES, pos):
            raise CarError("CID must be CIDv1 dag-cbor/raw with a 32-byte sha2-256 digest")
        if length - 36 > max_block_size:
            raise CarError(f"block of {length - 36} bytes exceeds {max_block_size}")
        body = raw[pos + 36 : block_end]
        if not raw.startswith(sha256(body).digest(), pos + 4):
            raise CarError("block does not match its CID")
        blocks[raw[pos : pos + 36]] = body
        pos = block_end
    return roots, blocks


def read_car(
    raw: bytes, *, max_block_size: int = MAX_BLOCK_SIZE
) -> tuple[list[str], dict[str, bytes]]:
    """:func:`read_blocks` with the CIDs as base32 strings (what ops and commits name)."""
    roots, blocks = read_blocks(raw, max_block_size=max_block_size)
    encode = libipld.encode_cid
    try:  # block CIDs were checked above; a root is only a tag-42 link until encoded
        root_strings = [encode(r) for r in roots]
    except ValueError as exc:
        raise CarError(f"CAR root is not a valid CID: {exc}") from None
    return root_strings, {encode(cid): body for cid, body in blocks.items()}
