"""The seam between the routers and the moderation read model's visibility decision.

Every list, search, detail and audio query filters rows with :meth:`Visibility.track` (or
:meth:`Visibility.actor` for people, :meth:`Visibility.record` for other records), so one
place decides what a context may show: the ``plyr_visible`` decision of
``migrations/0007_moderation.sql``, inlined by :func:`api.moderation.visible_clause`.
Contexts: list, search, view (a page someone navigated to: artist catalogue, album,
playlist), detail (a permalink) and audio.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from api.moderation import visible_clause

__all__ = ["Context", "Visibility"]

Context = Literal["list", "search", "view", "detail", "audio"]


@dataclass(frozen=True, slots=True)
class Visibility:
    """Builds the SQL boolean clauses of the moderation decision for the routers' aliases."""

    def track(self, context: Context, *, alias: str = "t") -> str:
        """A clause true when track ``alias`` may be shown."""
        return visible_clause(f"{alias}.uri", f"{alias}.did", context)

    def actor(self, context: Context, *, did: str = "a.did") -> str:
        """A clause true when the person whose DID is column ``did`` may be shown."""
        return visible_clause(did, did, context)

    def record(self, context: Context, *, uri: str, did: str) -> str:
        """A clause for any other record (like, comment, list) by account ``did``."""
        return visible_clause(uri, did, context)
