"""The moderation decision for the API: one predicate, used by every surface.

Contract (the SQL lives in ``migrations/0007_moderation.sql``; projected by
``projectors/moderation.py``):

``plyr_visible(uri text, did text, context text, adult_ok boolean) RETURNS boolean``
    STABLE. True when the item may be shown. ``uri`` is the item's AT-URI (for an artist,
    its DID), ``did`` the owning account. ``context`` is one of

    - ``list``   feeds, top tracks, tag pages (surfaces where *we* choose what to show)
    - ``search`` ``/search/``
    - ``view``   a page someone navigated to: artist catalogue, album, playlist
    - ``detail`` a permalink (``/tracks/{id}``, by-uri lookups)
    - ``audio``  the bytes (``/audio/{id}``)

    ``adult_ok`` is the viewer's opt-in to adult content (always false for anonymous).

    ============================================  ====  ======  ====  ======  =====
    what applies to the item or its account       list  search  view  detail  audio
    ============================================  ====  ======  ====  ======  =====
    ``!takedown`` / ``!hide`` (operator/labeler)  hide  hide    hide  hide    hide
    account deactivated/takendown/suspended/      hide  hide    hide  hide    hide
    deleted
    ``copyright-violation`` (label or self)       hide  hide    hide  show    show
    adult: sexual, porn, nudity, graphic-media    hide  hide    show  show    show
    (label or self), unless ``adult_ok``
    ============================================  ====  ======  ====  ======  =====

    Labels count only from the configured labelers (``PLYR_LABELERS``) and the operator
    (``PLYR_OPERATOR_DID``); negations are per source; a label whose ``exp`` has passed is
    ignored (at query time). A label on a DID applies to everything of that account.
    Unknown contexts behave like ``list``.

``plyr_hidden(context text, adult_ok boolean) RETURNS TABLE (subject text)``
    The hidden subjects (AT-URIs and DIDs); an inlinable set-returning function.

For single rows call ``plyr_visible`` (see :func:`is_visible`). In list and search
queries use :func:`visible_clause`: the same decision inlined into the query (index
probes per row, or a hashed set for queries that rank many candidates), instead of one
function call per candidate row. Takedowns should answer 404 (or 410) on detail and
audio, consistently.

Also here: :func:`sensitive_images`, the ``{image_ids, urls}`` blur list — artwork of
tracks carrying an adult label (self-label or trusted label, on the track or its account).
"""

from __future__ import annotations

import re
from typing import Any, Literal, get_args

from psycopg import AsyncConnection

__all__ = [
    "CONTEXTS",
    "Context",
    "hidden_subjects",
    "image_id",
    "is_visible",
    "sensitive_images",
    "visible_clause",
]

Context = Literal["list", "search", "view", "detail", "audio"]
CONTEXTS: tuple[str, ...] = get_args(Context)

_COLUMN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")
# plyr's image ids, as its web client extracts them (R2 dev URLs and /images/<id>.<ext>).
_IMAGE_ID = re.compile(r"(?:r2\.dev|/images)/([^/?#.]+)\.")


def _column(expr: str) -> str:
    if not _COLUMN.match(expr):
        raise ValueError(f"not a column reference: {expr!r}")
    return expr


def hidden_subjects(context: Context, *, adult_ok: bool = False) -> str:
    """SQL query of the subjects hidden in ``context`` (for a ``WITH … AS MATERIALIZED``)."""
    if context not in CONTEXTS:
        raise ValueError(f"unknown moderation context {context!r}")
    return f"SELECT subject FROM plyr_hidden('{context}', {'true' if adult_ok else 'false'})"


def visible_clause(
    uri: str, did: str, context: Context, *, adult_ok: bool = False, hidden: str | None = None
) -> str:
    """SQL boolean: may the row whose AT-URI is column ``uri`` and owner column ``did`` show?

    ``uri`` and ``did`` are column references (``t.uri``, ``t.did``), not values.

    Default form: per-row index probes (``NOT EXISTS (… plyr_hidden … OFFSET 0)``; the
    fence keeps it a correlated subplan whose ``subject = column`` reaches the indexes of
    every branch of ``plyr_hidden``). Best when few rows are examined: keyset-paginated
    lists, ``LIMIT``-ed index scans, single rows.

    ``hidden``: the name of a ``WITH … AS MATERIALIZED (hidden_subjects(…))`` CTE of the
    same context; each check is then a hashed ``NOT IN`` over it (one hash build per check,
    O(1) per row) — for ranked queries that examine many candidates.
    """
    body = hidden_subjects(context, adult_ok=adult_ok)
    subjects = dict.fromkeys((_column(uri), _column(did)))
    if hidden is not None:
        name = _column(hidden)
        return " AND ".join(f"{c} NOT IN (SELECT subject FROM {name})" for c in subjects)
    return " AND ".join(
        f"NOT EXISTS (SELECT 1 FROM ({body}) mh WHERE mh.subject = {column} OFFSET 0)"
        for column in subjects
    )


async def is_visible(
    conn: AsyncConnection, uri: str, did: str, context: Context, *, adult_ok: bool = False
) -> bool:
    """The decision for one item (``uri`` and ``did`` are values here)."""
    if context not in CONTEXTS:
        raise ValueError(f"unknown moderation context {context!r}")
    cur = await conn.execute("SELECT plyr_visible(%s, %s, %s, %s)", (uri, did, context, adult_ok))
    row = await cur.fetchone()
    return bool(row and row[0])


_SENSITIVE = """
WITH adult AS (
    SELECT s.uri AS subject FROM moderation_self_label s WHERE s.vals && plyr_adult_labels()
    UNION
    SELECT l.uri FROM moderation_label l
     WHERE NOT l.neg AND (l.exp IS NULL OR l.exp > now()) AND l.val = ANY (plyr_adult_labels())
)
SELECT r.image_url FROM moderation_record r JOIN adult a ON a.subject = r.uri
 WHERE NOT r.deleted AND r.image_url IS NOT NULL
UNION
SELECT r.image_url FROM moderation_record r JOIN adult a ON a.subject = r.did
 WHERE NOT r.deleted AND r.image_url IS NOT NULL
ORDER BY 1
"""


def image_id(url: str) -> str | None:
    """plyr's image id inside an artwork URL, if it has one."""
    match = _IMAGE_ID.search(url)
    return match.group(1) if match else None


async def sensitive_images(conn: AsyncConnection) -> dict[str, Any]:
    """``{image_ids, urls}``: artwork the web client blurs (plyr's response shape)."""
    cur = await conn.execute(_SENSITIVE)
    urls = [str(row[0]) for row in await cur.fetchall()]
    ids = sorted({i for i in map(image_id, urls) if i is not None})
    return {"image_ids": ids, "urls": urls}
