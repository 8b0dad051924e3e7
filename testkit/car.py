"""DAG-CBOR blocks and CAR files for test data."""

from __future__ import annotations

from typing import Any

import cbrrr


def encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def block(obj: Any) -> tuple[cbrrr.CID, bytes]:
    """DAG-CBOR bytes of ``obj`` (atjson form) and their CID."""
    data = cbrrr.encode_dag_cbor(obj, atjson_mode=True)
    return cbrrr.CID.cidv1_dag_cbor_sha256_32_from(data), data


def make_car(roots: list[cbrrr.CID], blocks: list[tuple[cbrrr.CID, bytes]]) -> bytes:
    root_list: list[cbrrr.DagCborTypes] = list(roots)
    header = cbrrr.encode_dag_cbor({"version": 1, "roots": root_list})
    out = bytearray(encode_varint(len(header)) + header)
    for cid, data in blocks:
        raw = bytes(cid)
        out += encode_varint(len(raw) + len(data)) + raw + data
    return bytes(out)
