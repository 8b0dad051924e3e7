"""Opaque keyset cursors: the sort key of the last item, base64url-encoded JSON."""

from __future__ import annotations

import base64
import json
from datetime import datetime
from typing import Any, TypeVar

from api.errors import ApiError

__all__ = [
    "decode_count_cursor",
    "decode_cursor",
    "decode_key_cursor",
    "encode_count_cursor",
    "encode_cursor",
    "encode_key_cursor",
]


_T = TypeVar("_T", int, str)


def _encode(first: object, second: object) -> str:
    raw = json.dumps([first, second], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decoded(cursor: str) -> tuple[Any, Any]:
    """The two values a cursor holds; ``ValueError``/``TypeError`` if it holds no pair."""
    raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    first, second = json.loads(raw)
    return first, second


def _foreign() -> ApiError:
    return ApiError(400, "invalid_cursor", "cursor is not one this API issued")


def _decode_dated(cursor: str, key_type: type[_T]) -> tuple[datetime, _T]:
    """The (created_at, key) a dated cursor points after; 400 for anything we did not issue."""
    try:
        created, key = _decoded(cursor)
        when = datetime.fromisoformat(created)
        if not isinstance(key, key_type) or when.tzinfo is None:
            raise ValueError
    except (ValueError, TypeError):
        raise _foreign() from None
    return when, key


def encode_cursor(created_at: datetime, item_id: int) -> str:
    return _encode(created_at.isoformat(), item_id)


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    """The (created_at, id) a cursor points after; 400 for anything we did not issue."""
    return _decode_dated(cursor, int)


def encode_key_cursor(created_at: datetime, key: str) -> str:
    """A cursor after (created_at, key) for feeds whose tie-breaker is a string."""
    return _encode(created_at.isoformat(), key)


def decode_key_cursor(cursor: str) -> tuple[datetime, str]:
    """The (created_at, key) a string-keyed cursor points after; 400 if foreign."""
    return _decode_dated(cursor, str)


def encode_count_cursor(count: int, item_id: int) -> str:
    """A cursor after (count, id) for lists ranked by a count (charts)."""
    return _encode(count, item_id)


def decode_count_cursor(cursor: str) -> tuple[int, int]:
    """The (count, id) a count cursor points after; 400 if foreign."""
    try:
        count, item_id = _decoded(cursor)
    except (ValueError, TypeError):
        raise _foreign() from None
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (count, item_id)):
        raise _foreign()
    return count, item_id
