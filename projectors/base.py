"""What every projector module shares: its protocol, errors and small pure helpers."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol

from psycopg import AsyncConnection

from kernel.envelope import Envelope
from kernel.ids import track_id  # re-exported for tests and benches that build rows

__all__ = ["InvalidEvent", "OffsetConflict", "Projector", "parse_datetime", "track_id"]


class InvalidEvent(ValueError):
    """An event whose data cannot be projected; it goes to ``dead_letter``."""


class OffsetConflict(RuntimeError):
    """The stored offset moved under us (another worker); the batch is rolled back."""


class Projector(Protocol):
    """A read model fed from one topic."""

    name: str
    tables: tuple[str, ...]
    """Tables it owns, dropped (truncated) by a rebuild."""

    async def apply(self, conn: AsyncConnection, envelope: Envelope) -> None:
        """Apply one event inside the caller's transaction; raise :class:`InvalidEvent`."""


def parse_datetime(value: object, field: str) -> datetime:
    """An ATProto datetime string as an aware ``datetime`` (UTC if it had no offset)."""
    if not isinstance(value, str):
        raise InvalidEvent(f"{field}: expected a datetime string")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidEvent(f"{field}: {value!r} is not a datetime") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
