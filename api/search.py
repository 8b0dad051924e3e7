"""Keyword search over the search read model (``migrations/0006_search.sql``).

:func:`search` answers plyr's ``GET /search/``: ``{results, counts}``, results of every
requested type merged by ``relevance`` (highest first), ``counts`` = results per type.

Matching and ranking (plyr's tiers, #1523): the query and the indexed text go through the
same ``plyr_search_norm`` (accents folded, lower case, AC/DC -> acdc, R.E.M. -> rem), then

====================  ==============================  ================================
tier                  relevance                       index
====================  ==============================  ================================
exact                 5.0                             btree (``norm``)
prefix                3.0 + word_similarity           btree range (text_pattern_ops)
substring             1.5 + word_similarity           trigram GIN (``LIKE '%q%'``)
fuzzy (typos)         word_similarity (>= 0.6)        trigram GIN (``q <% norm``)
====================  ==============================  ================================

Each tier is its own index-driven subquery, best first, with its own ``LIMIT``; they are
concatenated with ``UNION ALL`` under one ``LIMIT``, so later tiers are not even executed
once earlier ones filled the page (an exact title never waits for the fuzzy scan). A row
belongs to exactly one tier (its best). Queries shorter than three characters (after
normalisation) skip the trigram tiers, which cannot help them, and match the start of any
word instead of any substring ("me" finds "Metallica" and "Saint Me"). Artists match on
display name and handle (greatest of both, as plyr). A query that is a DID or an AT-URI is
looked up directly (exact, 5.0); a handle matches exactly through the handle column.

Visibility: every candidate passes the moderation decision for the ``search`` context
(:func:`api.moderation.visible_clause`) and its account must be active in the catalog
(``artist.account_status``), inside each tier, so hidden items never take a slot.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import dict_row

from api.moderation import hidden_subjects, visible_clause

__all__ = ["TYPES", "search", "tag_id"]

TYPES: tuple[str, ...] = ("tracks", "artists", "albums", "tags", "playlists")
_DOC_TYPE = {"tracks": "track", "artists": "artist", "albums": "album", "playlists": "playlist"}
_SHORT = 3


def tag_id(name: str) -> int:
    """A stable integer id for a tag (53 bits of its SHA-256, like track ids)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big") >> 11


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


@dataclass(frozen=True, slots=True)
class _Terms:
    """The normalised query and its LIKE patterns and prefix range."""

    q: str

    @property
    def short(self) -> bool:
        return len(self.q) < _SHORT

    def params(self, limit: int) -> dict[str, Any]:
        escaped = _escape_like(self.q)
        return {
            "q": self.q,
            "prefix": escaped + "%",
            "infix": "%" + escaped + "%",
            "word": "% " + escaped + "%",
            # the prefix as a byte-order range: a btree range even in a generic plan
            "lo": self.q,
            "hi": self.q + _TOP,
            "limit": limit,
        }


_TOP = "\U0010ffff"
_HIDDEN_CTE = "hidden"
_INACTIVE = (
    "inactive AS MATERIALIZED (SELECT ca.did FROM artist ca WHERE ca.account_status <> 'active')"
)


def _relevance(column: str, terms: _Terms) -> str:
    """plyr's tiered score of one column (exact 5, prefix 3+ws, substring 1.5+ws, else ws)."""
    ws = f"word_similarity(%(q)s, {column})"
    middle = f"{column} LIKE %(word)s" if terms.short else f"{column} LIKE %(infix)s"
    return (
        f"(CASE WHEN {column} = %(q)s THEN 5.0 WHEN {column} LIKE %(prefix)s THEN 3.0 + {ws}"
        f" WHEN {middle} THEN 1.5 + {ws} ELSE {ws} END)"
    )


def _any(columns: list[str], template: str) -> str:
    return "(" + " OR ".join(template.format(c=c) for c in columns) + ")"


def _tiers(columns: list[str], terms: _Terms, doc_type: str, adult_ok: bool) -> str:
    """The tier subqueries over ``search_doc d``, best tier first, each with its LIMIT.

    Every row lands in exactly one tier (its best). The prefix tier walks the btree in
    byte order and stops after ``limit`` visible rows; byte order puts the whole word
    first ("love ..." before "lovely"), close to plyr's word_similarity tie-break.
    """
    relevance = (
        _relevance(columns[0], terms)
        if len(columns) == 1
        else "greatest(" + ", ".join(_relevance(c, terms) for c in columns) + ")"
    )

    def tier(
        cond: str,
        order: str = "relevance DESC, length(d.norm), d.doc_key",
        *,
        hashed: bool = True,
    ) -> str:
        visible = _doc_visibility(doc_type, adult_ok, hashed=hashed)
        return (
            f"(SELECT d.doc_key, {relevance} AS relevance FROM search_doc d"
            f" WHERE d.doc_type = '{doc_type}' AND {cond} AND {visible}"
            f" ORDER BY {order} LIMIT %(limit)s)"
        )

    exact = _any(columns, "{c} = %(q)s")
    prefix = _any(columns, "{c} LIKE %(prefix)s")
    not_exact = f"NOT coalesce({exact}, false)"
    prefix_parts = [
        tier(
            f"{c} ~>=~ %(lo)s AND {c} ~<~ %(hi)s AND {not_exact}",
            f"{c} USING ~<~",
            hashed=False,
        )
        for c in columns
    ]
    prefix_tier = (
        prefix_parts[0]
        if len(prefix_parts) == 1
        else f"(SELECT * FROM ({' UNION '.join(prefix_parts)}) p"
        " ORDER BY relevance DESC, doc_key LIMIT %(limit)s)"
    )
    tiers = [tier(exact, hashed=False), prefix_tier]
    if terms.short:
        if len(terms.q) > 1:
            words = _any(columns, "{c} LIKE %(word)s")
            tiers.append(tier(f"{words} AND NOT coalesce({prefix}, false)"))
    else:
        infix = _any(columns, "{c} LIKE %(infix)s")
        tiers.append(tier(f"{infix} AND NOT coalesce({prefix}, false)"))
        fuzzy = _any(columns, "%(q)s <%% {c}")
        tiers.append(tier(f"{fuzzy} AND NOT coalesce({infix}, false)"))
    return " UNION ALL ".join(tiers)


def _doc_visibility(doc_type: str, adult_ok: bool, *, hashed: bool) -> str:
    """Moderation and account checks for ``search_doc d``.

    ``hashed``: probe a hashed set of the hidden subjects (tiers that may examine many
    candidates); otherwise index probes per row (tiers that stop after ``limit`` rows).
    """
    hidden = _HIDDEN_CTE if hashed else None
    owner = "d.did NOT IN (SELECT did FROM inactive)"
    if doc_type == "album":
        member = visible_clause("m.source_uri", "m.did", "search", adult_ok=adult_ok, hidden=hidden)
        return (
            f"{owner} AND EXISTS (SELECT 1 FROM search_album_member m"
            f" WHERE m.album_key = d.doc_key AND (m.kind = 'track' OR m.item_count > 0)"
            # OFFSET 0 keeps this a per-candidate index probe (never a join over all
            # members, which the planner picks on its poor estimates for trigram matches)
            f" AND {member} OFFSET 0)"
        )
    subject = "d.did" if doc_type == "artist" else "d.uri"
    visible = visible_clause(subject, "d.did", "search", adult_ok=adult_ok, hidden=hidden)
    return f"{owner} AND {visible}"


def _doc_query(doc_type: str, terms: _Terms, adult_ok: bool, *, key_only: bool = False) -> str:
    """Ranked documents of one type; ``key_only``: an exact key lookup (DID/AT-URI)."""
    columns = ["d.norm", "d.alt_norm"] if doc_type == "artist" else ["d.norm"]
    if key_only:
        visible = _doc_visibility(doc_type, adult_ok, hashed=False)
        hits = (
            f"SELECT d.doc_key, 5.0::float8 AS relevance FROM search_doc d"
            f" WHERE d.doc_type = '{doc_type}' AND {visible} AND d.doc_key = ANY(%(keys)s)"
            " LIMIT %(limit)s"
        )
    else:
        tiers = _tiers(columns, terms, doc_type, adult_ok)
        hits = f"SELECT * FROM ({tiers}) tiers LIMIT %(limit)s"
    hidden = hidden_subjects("search", adult_ok=adult_ok)
    return f"""
WITH {_HIDDEN_CTE} AS MATERIALIZED ({hidden}), {_INACTIVE}
SELECT d.doc_key, d.did, d.uri, d.item_id, d.title, d.alt, d.slug, d.track_count,
       coalesce(d.image_url, al.image_url) AS image_url,
       coalesce(ad.alt, d.did) AS owner_handle, coalesce(ad.title, ad.alt, d.did) AS owner_name,
       hit.relevance
  FROM ({hits}) hit
  JOIN search_doc d ON d.doc_type = '{doc_type}' AND d.doc_key = hit.doc_key
  LEFT JOIN search_doc ad ON ad.doc_type = 'artist' AND ad.doc_key = d.did
  LEFT JOIN album al ON '{doc_type}' = 'album' AND al.did = d.did AND al.slug = d.slug
 ORDER BY hit.relevance DESC, length(d.norm), d.doc_key
"""


def _tag_query(terms: _Terms, adult_ok: bool) -> str:
    visible = visible_clause(
        "t.track_uri", "t.did", "search", adult_ok=adult_ok, hidden=_HIDDEN_CTE
    )
    match = _any(["t.norm"], "{c} = %(q)s OR {c} LIKE %(prefix)s")
    if not terms.short:
        match = f"({match} OR t.norm LIKE %(infix)s OR %(q)s <%% t.norm)"
    relevance = _relevance("t.norm", terms)
    hidden = hidden_subjects("search", adult_ok=adult_ok)
    return f"""
WITH {_HIDDEN_CTE} AS MATERIALIZED ({hidden}), {_INACTIVE}
SELECT t.tag, count(*) AS track_count, max({relevance}) AS relevance
  FROM search_tag t
 WHERE {match} AND {visible} AND t.did NOT IN (SELECT did FROM inactive)
 GROUP BY t.tag
 ORDER BY relevance DESC, t.tag
 LIMIT %(limit)s
"""


def _lookup_keys(q: str) -> dict[str, list[str]] | None:
    """Document keys for a DID or AT-URI query; ``None`` for an ordinary query."""
    text = q.strip()
    if text.startswith("did:"):
        return {"artists": [text]}
    if not text.startswith("at://"):
        return None
    authority, _, path = text[5:].partition("/")
    collection, _, rkey = path.partition("/")
    if not collection:
        return {"artists": [authority]}
    if collection == "fm.plyr.track" and rkey:
        return {"tracks": [text]}
    if collection == "fm.plyr.list" and rkey:
        return {"playlists": [text], "albums_by_list": [text]}
    return {}


def _present(kind: str, row: dict[str, Any]) -> dict[str, Any]:
    relevance = round(float(row["relevance"]), 3)
    if kind == "tracks":
        return {
            "type": "track",
            "id": row["item_id"],
            "title": row["title"],
            "artist_handle": row["owner_handle"],
            "artist_display_name": row["owner_name"],
            "image_url": row["image_url"],
            "relevance": relevance,
        }
    if kind == "artists":
        return {
            "type": "artist",
            "did": row["did"],
            "handle": row["alt"] or row["did"],
            "display_name": row["title"],
            "avatar_url": row["image_url"],
            "relevance": relevance,
        }
    if kind == "albums":
        return {
            "type": "album",
            "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"at://{row['did']}/album/{row['slug']}")),
            "title": row["title"],
            "slug": row["slug"],
            "artist_handle": row["owner_handle"],
            "artist_display_name": row["owner_name"],
            "image_url": row["image_url"],
            "relevance": relevance,
        }
    if kind == "playlists":
        return {
            "type": "playlist",
            "id": str(uuid.uuid5(uuid.NAMESPACE_URL, row["uri"])),
            "name": row["title"],
            "owner_handle": row["owner_handle"],
            "owner_display_name": row["owner_name"],
            "image_url": row["image_url"],
            "track_count": row["track_count"],
            "relevance": relevance,
        }
    return {
        "type": "tag",
        "id": tag_id(row["tag"]),
        "name": row["tag"],
        "track_count": row["track_count"],
        "relevance": relevance,
    }


async def _resolve_handle(conn: AsyncConnection, authority: str) -> str:
    if authority.startswith("did:"):
        return authority
    cur = await conn.execute(
        "SELECT doc_key FROM search_doc WHERE doc_type = 'artist'"
        " AND alt_norm = plyr_search_norm(%s) AND lower(alt) = lower(%s) LIMIT 1",
        (authority, authority),
    )
    row = await cur.fetchone()
    return str(row[0]) if row else authority


async def search(
    conn: AsyncConnection,
    q: str,
    *,
    types: Collection[str] = TYPES,
    limit: int = 20,
    adult_ok: bool = False,
) -> dict[str, Any]:
    """plyr's unified search: ``{results, counts}`` (``limit`` results per type at most)."""
    wanted = [t for t in TYPES if t in types]
    keys = _lookup_keys(q)
    if keys is not None:
        return await _lookup(conn, q, keys, wanted, limit, adult_ok)
    counts = dict.fromkeys(TYPES, 0)
    results: list[dict[str, Any]] = []
    # Pipelined: BEGIN + SET + normalisation in one round trip, the per-type queries in
    # the next. Generic plans: the prefix range and the trigram conditions are index
    # conditions on parameters, so the plan does not depend on the values, and planning
    # every time would cost more than the query.
    async with conn.pipeline(), conn.transaction():
        await conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        cur = await conn.execute("SELECT plyr_search_norm(%s)", (q,))
        row = await cur.fetchone()
        terms = _Terms(str(row[0]) if row and row[0] else "")
        if terms.q:
            params = terms.params(limit)
            pending = []
            for kind in wanted:
                sql = (
                    _tag_query(terms, adult_ok)
                    if kind == "tags"
                    else _doc_query(_DOC_TYPE[kind], terms, adult_ok)
                )
                kind_cur = conn.cursor(row_factory=dict_row)
                await kind_cur.execute(sql, params, prepare=True)
                pending.append((kind, kind_cur))
            for kind, kind_cur in pending:
                rows = await kind_cur.fetchall()
                results += [_present(kind, r) for r in rows]
                counts[kind] = len(rows)
    results.sort(key=lambda r: r["relevance"], reverse=True)
    return {"results": results, "counts": counts}


async def _lookup(
    conn: AsyncConnection,
    q: str,
    keys: dict[str, list[str]],
    wanted: list[str],
    limit: int,
    adult_ok: bool,
) -> dict[str, Any]:
    """Exact lookups for a DID or AT-URI query."""
    counts = dict.fromkeys(TYPES, 0)
    results: list[dict[str, Any]] = []
    if "at://" in q and "artists" in keys:
        keys["artists"] = [await _resolve_handle(conn, keys["artists"][0])]
    for kind in wanted:
        kind_keys = keys.get(kind, [])
        if kind == "albums" and keys.get("albums_by_list"):
            cur = await conn.execute(
                "SELECT album_key FROM search_album_member WHERE source_uri = ANY(%s)",
                (keys["albums_by_list"],),
            )
            kind_keys = [str(r[0]) for r in await cur.fetchall()]
        if not kind_keys:
            continue
        sql = _doc_query(_DOC_TYPE[kind], _Terms(""), adult_ok, key_only=True)
        dict_cur = conn.cursor(row_factory=dict_row)
        await dict_cur.execute(sql, {"keys": kind_keys, "limit": limit})
        rows = await dict_cur.fetchall()
        results += [_present(kind, r) for r in rows]
        counts[kind] = len(rows)
    return {"results": results, "counts": counts}
