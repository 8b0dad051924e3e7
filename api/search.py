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

from api.moderation import visible_clause

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
    """The normalised query and its LIKE patterns."""

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
            "limit": limit,
        }


def _tier_conditions(column: str, terms: _Terms) -> list[str]:
    """Per tier, the condition on one column (exact, prefix, substring[, fuzzy])."""
    tiers = [f"{column} = %(q)s", f"{column} LIKE %(prefix)s"]
    if terms.short:
        if len(terms.q) > 1:
            tiers.append(f"{column} LIKE %(word)s")
    else:
        tiers += [f"{column} LIKE %(infix)s", f"%(q)s <%% {column}"]
    return tiers


def _relevance(column: str, terms: _Terms) -> str:
    exact, prefix, *rest = _tier_conditions(column, terms)
    ws = f"word_similarity(%(q)s, {column})"
    parts = [f"WHEN {exact} THEN 5.0", f"WHEN {prefix} THEN 3.0 + {ws}"]
    if rest:
        parts.append(f"WHEN {rest[0]} THEN 1.5 + {ws}")
    return f"(CASE {' '.join(parts)} ELSE {ws} END)"


def _tiered(
    columns: list[str], terms: _Terms, select: str, source: str, where: str, order: str
) -> str:
    """The tier subqueries for rows of ``source`` matched on ``columns``, best tier first."""
    per_column = [_tier_conditions(c, terms) for c in columns]
    relevance = (
        _relevance(columns[0], terms)
        if len(columns) == 1
        else "greatest(" + ", ".join(_relevance(c, terms) for c in columns) + ")"
    )
    subqueries = []
    for tier in range(len(per_column[0])):
        match = " OR ".join(conds[tier] for conds in per_column)
        clauses = [where, f"({match})"]
        if tier > 0:
            better = " OR ".join(conds[tier - 1] for conds in per_column)
            if not terms.short:
                # exact ⊂ prefix ⊂ substring ⊂ ...: excluding the previous tier is enough
                clauses.append(f"NOT coalesce(({better}), false)")
            else:
                earlier = " OR ".join(c for conds in per_column for c in conds[:tier])
                clauses.append(f"NOT coalesce(({earlier}), false)")
        subqueries.append(
            f"(SELECT {select}, {relevance} AS relevance FROM {source}"
            f" WHERE {' AND '.join(clauses)} ORDER BY relevance DESC, {order} LIMIT %(limit)s)"
        )
    return " UNION ALL ".join(subqueries)


def _active_owner(did: str) -> str:
    return (
        f"NOT EXISTS (SELECT 1 FROM artist ca WHERE ca.did = {did}"
        " AND ca.account_status <> 'active')"
    )


def _doc_visibility(doc_type: str, adult_ok: bool) -> str:
    owner = _active_owner("d.did")
    if doc_type == "album":
        member = visible_clause("m.source_uri", "m.did", "search", adult_ok=adult_ok)
        return (
            f"{owner} AND EXISTS (SELECT 1 FROM search_album_member m"
            f" WHERE m.album_key = d.doc_key AND (m.kind = 'track' OR m.item_count > 0)"
            f" AND {member})"
        )
    subject = "d.did" if doc_type == "artist" else "d.uri"
    return f"{owner} AND {visible_clause(subject, 'd.did', 'search', adult_ok=adult_ok)}"


def _doc_query(doc_type: str, terms: _Terms, adult_ok: bool, *, key_only: bool = False) -> str:
    """Ranked documents of one type; ``key_only``: an exact key lookup (DID/AT-URI)."""
    columns = ["d.norm", "d.alt_norm"] if doc_type == "artist" else ["d.norm"]
    where = f"d.doc_type = '{doc_type}' AND {_doc_visibility(doc_type, adult_ok)}"
    if key_only:
        hits = (
            f"SELECT d.doc_key, 5.0::float8 AS relevance FROM search_doc d"
            f" WHERE {where} AND d.doc_key = ANY(%(keys)s) LIMIT %(limit)s"
        )
    else:
        tiers = _tiered(
            columns,
            terms,
            "d.doc_key",
            "search_doc d",
            where,
            "length(d.norm), d.doc_key",
        )
        hits = f"SELECT * FROM ({tiers}) tiers LIMIT %(limit)s"
    return f"""
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
    visible = visible_clause("t.track_uri", "t.did", "search", adult_ok=adult_ok)
    match = " OR ".join(_tier_conditions("t.norm", terms))
    relevance = _relevance("t.norm", terms)
    return f"""
SELECT t.tag, count(*) AS track_count, max({relevance}) AS relevance
  FROM search_tag t
 WHERE ({match}) AND {visible} AND {_active_owner("t.did")}
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


async def _fetch(conn: AsyncConnection, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    cur = conn.cursor(row_factory=dict_row)
    # Never a prepared (generic) plan: LIKE prefixes must be planned with their values
    # to become btree ranges.
    await cur.execute(sql, params, prepare=False)
    return await cur.fetchall()


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
    counts = dict.fromkeys(TYPES, 0)
    wanted = [t for t in TYPES if t in types]
    results: list[dict[str, Any]] = []
    keys = _lookup_keys(q)
    if keys is not None:
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
            rows = await _fetch(conn, sql, {"keys": kind_keys, "limit": limit})
            results += [_present(kind, r) for r in rows]
            counts[kind] = len(rows)
        return {"results": results, "counts": counts}

    cur = await conn.execute("SELECT plyr_search_norm(%s)", (q,))
    row = await cur.fetchone()
    terms = _Terms(str(row[0]) if row and row[0] else "")
    if terms.q:
        params = terms.params(limit)
        for kind in wanted:
            sql = (
                _tag_query(terms, adult_ok)
                if kind == "tags"
                else _doc_query(_DOC_TYPE[kind], terms, adult_ok)
            )
            rows = await _fetch(conn, sql, params)
            results += [_present(kind, r) for r in rows]
            counts[kind] = len(rows)
    results.sort(key=lambda r: r["relevance"], reverse=True)
    return {"results": results, "counts": counts}
