"""Opaque keyset cursors: the sort key of the last item, base64url-encoded JSON."""

from __future__ import annotations

import base64
import json
from datetime import datetime

from api.errors import ApiError

__all__ = [
    "decode_count_cursor",
    "decode_cursor",
    "decode_key_cursor",
    "encode_count_cursor",
    "encode_cursor",
    "encode_key_cursor",
]


def encode_cursor(created_at: datetime, item_id: int) -> str:
    raw = json.dumps([created_at.isoformat(), item_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    """The (created_at, id) a cursor points after; 400 for anything we did not issue."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created, item_id = json.loads(raw)
        when = datetime.fromisoformat(created)
        if not isinstance(item_id, int) or when.tzinfo is None:
            raise ValueError
    except (ValueError, TypeError):
        raise ApiError(400, "invalid_cursor", "cursor is not one this API issued") from None
    return when, item_id


def encode_key_cursor(created_at: datetime, key: str) -> str:
    """A cursor after (created_at, key) for feeds whose tie-breaker is a string."""
    raw = json.dumps([created_at.isoformat(), key], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_key_cursor(cursor: str) -> tuple[datetime, str]:
    """The (created_at, key) a string-keyed cursor points after; 400 if foreign."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created, key = json.loads(raw)
        when = datetime.fromisoformat(created)
        if not isinstance(key, str) or when.tzinfo is None:
            raise ValueError
    except (ValueError, TypeError):
        raise ApiError(400, "invalid_cursor", "cursor is not one this API issued") from None
    return when, key


def encode_count_cursor(count: int, item_id: int) -> str:
    """A cursor after (count, id) for lists ranked by a count (charts)."""
    raw = json.dumps([count, item_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_count_cursor(cursor: str) -> tuple[int, int]:
    """The (count, id) a count cursor points after; 400 if foreign."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        count, item_id = json.loads(raw)
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (count, item_id)):
            raise ValueError
    except (ValueError, TypeError):
        raise ApiError(400, "invalid_cursor", "cursor is not one this API issued") from None
    return count, item_id
