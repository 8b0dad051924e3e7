"""The seam between the routers and the moderation read model's visibility decision.

Every list, search, detail and audio query filters rows with :meth:`Visibility.track` (or
:meth:`Visibility.actor` for people), so one place decides what a context may show.

When the moderation migration has installed the SQL predicate
``plyr_visible(uri text, did text, context text, adult_ok boolean)`` the clauses call it;
until then they fall back to a conservative rule of our own: the artist's account is
active, takedown self-labels hide everywhere, copyright self-labels everywhere but the
permalink and the audio, adult self-labels in list/search. Contexts follow
``migrations/0007_moderation.sql``: list, search, view (a page someone navigated to: artist
catalogue, album, playlist), detail (a permalink) and audio. The choice is made once per
process, at startup (:func:`detect_visibility`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from psycopg import AsyncConnection

from api.moderation import visible_clause

__all__ = ["ADULT_LABELS", "Context", "Visibility", "detect_visibility"]

Context = Literal["list", "search", "view", "detail", "audio"]

ADULT_LABELS = ("sexual", "porn", "nudity", "graphic-media")
_HIDDEN_LABELS = ("!takedown", "!hide")
_COPYRIGHT = ("copyright-violation",)


def _array(values: tuple[str, ...]) -> str:
    return "array[" + ", ".join(f"'{v}'" for v in values) + "]"


def _moderation_clause(uri: str, did: str, context: Context) -> str:
    """The moderation module's list-friendly clause (see :func:`visible_clause`)."""
    return visible_clause(uri, did, context)


@dataclass(frozen=True, slots=True)
class Visibility:
    """Builds SQL boolean clauses; ``predicate`` says whether ``plyr_visible`` exists."""

    predicate: bool = False

    def track(self, context: Context, *, alias: str = "t", artist: str = "a") -> str:
        """A clause true when track ``alias`` (joined to artist ``artist``) may be shown."""
        if self.predicate:
            return _moderation_clause(f"{alias}.uri", f"{alias}.did", context)
        clause = (
            f"coalesce({artist}.account_status, 'active') = 'active'"
            f" AND NOT ({alias}.self_labels ?| {_array(_HIDDEN_LABELS)})"
        )
        if context in ("list", "search", "view"):
            clause += f" AND NOT ({alias}.self_labels ?| {_array(_COPYRIGHT)})"
        if context in ("list", "search"):
            clause += f" AND NOT ({alias}.self_labels ?| {_array(ADULT_LABELS)})"
        return clause

    def actor(self, context: Context, *, did: str = "a.did", artist: str = "a") -> str:
        """A clause true when the person ``did`` (artist row ``artist``) may be shown."""
        if self.predicate:
            return _moderation_clause(did, did, context)
        return f"coalesce({artist}.account_status, 'active') = 'active'"

    def record(self, context: Context, *, uri: str, did: str, artist: str) -> str:
        """A clause for any other record (like, comment, list) by account ``did``."""
        if self.predicate:
            return _moderation_clause(uri, did, context)
        return f"coalesce({artist}.account_status, 'active') = 'active'"


async def detect_visibility(conn: AsyncConnection) -> Visibility:
    """Use the moderation predicate if the database has it, else the fallback rule."""
    cur = await conn.execute(
        "SELECT to_regprocedure('plyr_visible(text, text, text, boolean)') IS NOT NULL"
    )
    row = await cur.fetchone()
    return Visibility(predicate=bool(row and row[0]))
