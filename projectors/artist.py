"""The ``artist`` read model: handles (identity events) and account status."""

from __future__ import annotations

from psycopg import AsyncConnection

from plyr_appview.envelope import Envelope

__all__ = ["apply_account", "apply_identity", "delete_by_did"]


async def apply_identity(conn: AsyncConnection, envelope: Envelope) -> None:
    """Record the repo's current handle (``None`` keeps the one we had)."""
    await conn.execute(
        "INSERT INTO artist (did, handle) VALUES (%s, %s) ON CONFLICT (did) DO UPDATE"
        " SET handle = coalesce(excluded.handle, artist.handle), updated_at = now()",
        (envelope.did, envelope.handle),
    )


async def apply_account(conn: AsyncConnection, envelope: Envelope) -> None:
    """Record the account status (active, deactivated, takendown, suspended, deleted)."""
    status = envelope.status or ("active" if envelope.active else "deactivated")
    await conn.execute(
        "INSERT INTO artist (did, account_status) VALUES (%s, %s) ON CONFLICT (did) DO UPDATE"
        " SET account_status = excluded.account_status, updated_at = now()",
        (envelope.did, status),
    )


async def delete_by_did(conn: AsyncConnection, did: str) -> None:
    await conn.execute("DELETE FROM artist WHERE did = %s", (did,))
