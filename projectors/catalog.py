"""The catalog projector: tracks and artists, from the ``repo`` topic."""

from __future__ import annotations

from psycopg import AsyncConnection

from plyr_appview.envelope import Envelope
from projectors import artist, track

__all__ = ["CatalogProjector"]


class CatalogProjector:
    """Dispatches repo events to the catalog read-model modules."""

    name = "catalog"
    tables: tuple[str, ...] = ("track", "artist")

    async def apply(self, conn: AsyncConnection, envelope: Envelope) -> None:
        kind = envelope.kind
        if kind == "identity.changed":
            await artist.apply_identity(conn, envelope)
        elif kind == "account.changed":
            await artist.apply_account(conn, envelope)
            if envelope.status == "deleted":
                await track.delete_by_did(conn, envelope.did)
        elif envelope.collection == track.COLLECTION:
            if kind == "record.deleted":
                assert envelope.uri is not None and envelope.rev is not None  # checked on parse
                await track.delete_track(conn, envelope.uri, envelope.rev)
            else:
                await track.insert_track(conn, track.to_row(envelope))
