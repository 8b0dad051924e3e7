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
belongs to exactly one tier (its best). Artists get one index branch per column (name,
handle) in every tier. All requested types run as one statement, so the hidden subjects
and inactive accounts are read once per search. Queries shorter than three characters (after
normalisation) skip the trigram tiers, which cannot help them, and match the start of any
word instead of any substring ("me" finds "Metallica" and "Saint Me"). Artists match on
display name and handle (greatest of both, as plyr). A query that is a DID, an AT-URI or
the handle of an artist we index (``alice.bsky.social``, ``@alice.bsky.social``) is looked
up directly (that item alone, 5.0): like an identifier, not text, and fuzzy matches on a
handle-shaped query would only be other handles sharing its domain (``.bsky.social``),
ranked by scanning every artist.

Visibility: every candidate passes the moderation decision for the ``search`` context
(:func:`api.moderation.visible_clause`) and its account must be active in the catalog
(``artist.account_status``), inside each tier, so hidden items never take a slot.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection, AsyncRawCursor
from psycopg.rows import dict_row

from api.moderation import hidden_subjects, visible_clause
from kernel.ids import album_id, list_id, tag_id

__all__ = ["TYPES", "search", "tag_id"]

TYPES: tuple[str, ...] = ("tracks", "artists", "albums", "tags", "playlists")
_DOC_TYPE = {"tracks": "track", "artists": "artist", "albums": "album", "playlists": "playlist"}
_SHORT = 3


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


@dataclass(frozen=True, slots=True)
class _Terms:
    """The normalised query and its LIKE patterns and prefix range."""

    q: str

    @property
    def short(self) -> bool:
        return len(self.q) < _SHORT

    @property
    def shape(self) -> str:
        """What the statement depends on: ``long`` (trigram tiers), ``short``, ``one``."""
        return "long" if not self.short else "short" if len(self.q) > 1 else "one"

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
# The hidden subjects split by kind, for the hashed checks: a DID column can only equal a
# DID, an AT-URI column only an AT-URI, and each check then hashes only its own part (an
# artist branch ~200 accounts instead of ~2,000 mostly track subjects; a hash is built
# per branch that sees a candidate).
_HIDDEN_DID = "hidden_did"
_HIDDEN_URI = "hidden_uri"
_INACTIVE = (
    "inactive AS MATERIALIZED (SELECT ca.did FROM artist ca WHERE ca.account_status <> 'active')"
)
# The fuzzy tier: word_similarity(q, text) >= _FUZZY, the ``<%`` operator's threshold.
_FUZZY = "0.6"
_SETUP = (
    "SELECT plyr_search_norm(%s), set_config('plan_cache_mode', 'force_generic_plan', true),"
    " set_config('max_parallel_workers_per_gather', '0', true),"
    " set_config('pg_trgm.word_similarity_threshold', %s, true)"
)


def _relevance(column: str, short: bool) -> str:
    """plyr's tiered score of one column (exact 5, prefix 3+ws, substring 1.5+ws, else ws)."""
    ws = f"word_similarity(%(q)s, {column})"
    middle = f"{column} LIKE %(word)s" if short else f"{column} LIKE %(infix)s"
    return (
        f"(CASE WHEN {column} = %(q)s THEN 5.0 WHEN {column} LIKE %(prefix)s THEN 3.0 + {ws}"
        f" WHEN {middle} THEN 1.5 + {ws} ELSE {ws} END)"
    )


def _any(columns: list[str], template: str) -> str:
    return "(" + " OR ".join(template.format(c=c) for c in columns) + ")"


def _tiers(columns: list[str], shape: str, doc_type: str, adult_ok: bool) -> str:
    """The tier subqueries over ``search_doc d``, best tier first, each with its LIMIT.

    Every row lands in exactly one tier (its best); each yields ``doc_key, relevance,
    len``. The prefix tier walks the btree in byte order and stops after ``limit``
    visible rows; byte order puts the whole word first ("love ..." before "lovely"),
    close to plyr's word_similarity tie-break. With two columns (artists: name and
    handle) every tier is one index-driven branch per column, merged: a document in the
    tier's top ``limit`` is in the top ``limit`` of a column it matches on.
    """
    short = shape != "long"
    relevance = (
        _relevance(columns[0], short)
        if len(columns) == 1
        else "greatest(" + ", ".join(_relevance(c, short) for c in columns) + ")"
    )

    def tier(
        cond: str,
        order: str = "relevance DESC, len, d.doc_key",
        *,
        hashed: bool = True,
        typed: bool = True,
    ) -> str:
        visible = _doc_visibility(doc_type, adult_ok, hashed=hashed)
        # typed=False: the condition's column exists on this type only (the handle);
        # leaving out ``doc_type =`` keeps the planner off a btree scan of the whole type
        kind = f"d.doc_type = '{doc_type}' AND " if typed else ""
        return (
            f"(SELECT d.doc_key, {relevance} AS relevance, length(d.norm) AS len"
            f" FROM search_doc d WHERE {kind}{cond} AND {visible}"
            f" ORDER BY {order} LIMIT %(limit)s)"
        )

    def merged(parts: list[str], order: str = "relevance DESC, len, doc_key") -> str:
        if len(parts) == 1:
            return parts[0]
        return f"(SELECT * FROM ({' UNION '.join(parts)}) u ORDER BY {order} LIMIT %(limit)s)"

    def per_column(template: str, excluded: str) -> str:
        return merged(
            [
                tier(f"{template.format(c=c)} AND NOT coalesce({excluded}, false)", typed=i == 0)
                for i, c in enumerate(columns)
            ]
        )

    exact = _any(columns, "{c} = %(q)s")
    prefix = _any(columns, "{c} LIKE %(prefix)s")
    prefix_tier = merged(
        [
            tier(
                f"{c} ~>=~ %(lo)s AND {c} ~<~ %(hi)s AND NOT coalesce({exact}, false)",
                f"{c} USING ~<~",
                hashed=False,
            )
            for c in columns
        ],
        "relevance DESC, doc_key",
    )
    tiers = [tier(exact, hashed=False), prefix_tier]
    if shape == "short":  # two characters: the start of any word
        tiers.append(per_column("{c} LIKE %(word)s", prefix))
    elif shape == "long":
        infix = _any(columns, "{c} LIKE %(infix)s")
        tiers.append(per_column("{c} LIKE %(infix)s", prefix))
        tiers.append(per_column("%(q)s <%% {c}", infix))
    return " UNION ALL ".join(tiers)


def _doc_visibility(doc_type: str, adult_ok: bool, *, hashed: bool) -> str:
    """Moderation and account checks for ``search_doc d``.

    ``hashed``: probe a hashed set of the hidden subjects (tiers that may examine many
    candidates); otherwise index probes per row (tiers that stop after ``limit`` rows).
    """
    owner = "d.did NOT IN (SELECT did FROM inactive)"
    if doc_type == "album":
        member = _visible("m.source_uri", "m.did", adult_ok, hashed=hashed)
        return (
            f"{owner} AND EXISTS (SELECT 1 FROM search_album_member m"
            f" WHERE m.album_key = d.doc_key AND (m.kind = 'track' OR m.item_count > 0)"
            # OFFSET 0 keeps this a per-candidate index probe (never a join over all
            # members, which the planner picks on its poor estimates for trigram matches)
            f" AND {member} OFFSET 0)"
        )
    subject = "d.did" if doc_type == "artist" else "d.uri"
    return f"{owner} AND {_visible(subject, 'd.did', adult_ok, hashed=hashed)}"


def _visible(subject: str, did: str, adult_ok: bool, *, hashed: bool) -> str:
    """:func:`visible_clause` for columns ``subject`` (an AT-URI, or the DID itself) and
    ``did``; ``hashed``: against the split hidden sets (see ``_HIDDEN_DID``)."""
    if not hashed:
        return visible_clause(subject, did, "search", adult_ok=adult_ok)
    checks = [visible_clause(did, did, "search", adult_ok=adult_ok, hidden=_HIDDEN_DID)]
    if subject != did:
        checks.insert(
            0, visible_clause(subject, subject, "search", adult_ok=adult_ok, hidden=_HIDDEN_URI)
        )
    return " AND ".join(checks)


# The columns every branch of a statement yields, in order (tags fill what they have).
_COLUMNS = (
    "kind, doc_key, did, uri, item_id, title, alt, slug, track_count, image_url,"
    " owner_handle, owner_name, relevance, len"
)


def _doc_branch(index: int, doc_type: str, hits: str) -> str:
    """The documents of ``hits`` (``doc_key, relevance, len``) with what results show."""
    album = doc_type == "album"
    return f"""
SELECT {index} AS kind, d.doc_key, d.did, d.uri, d.item_id, d.title, d.alt, d.slug,
       d.track_count, {"coalesce(d.image_url, al.image_url)" if album else "d.image_url"},
       coalesce(ad.alt, d.did), coalesce(ad.title, ad.alt, d.did),
       hit.relevance::float8, length(d.norm)
  FROM ({hits}) hit
  JOIN search_doc d ON d.doc_type = '{doc_type}' AND d.doc_key = hit.doc_key
  LEFT JOIN search_doc ad ON ad.doc_type = 'artist' AND ad.doc_key = d.did
  {"LEFT JOIN album al ON al.did = d.did AND al.slug = d.slug" if album else ""}"""


def _tag_branch(index: int, shape: str, adult_ok: bool) -> str:
    visible = _visible("t.track_uri", "t.did", adult_ok, hashed=True)
    match = _any(["t.norm"], "{c} = %(q)s OR {c} LIKE %(prefix)s")
    if shape == "long":
        match = f"({match} OR t.norm LIKE %(infix)s OR %(q)s <%% t.norm)"
    relevance = _relevance("t.norm", shape != "long")
    return f"""
SELECT * FROM (
SELECT {index} AS kind, t.tag, NULL::text, NULL::text, NULL::bigint, t.tag, NULL::text,
       NULL::text, count(*)::integer, NULL::text, NULL::text, NULL::text,
       max({relevance})::float8 AS relevance, 0
  FROM search_tag t
 WHERE {match} AND {visible} AND t.did NOT IN (SELECT did FROM inactive)
 GROUP BY t.tag
 ORDER BY relevance DESC, t.tag
 LIMIT %(limit)s) tags"""


def _statement(kinds: tuple[str, ...], shape: str, adult_ok: bool) -> str:
    """One statement for the ranked results of every kind in ``kinds``.

    Rows are ``_COLUMNS``, ordered by kind (its index in ``kinds``) then rank. The hidden
    subjects and the inactive accounts are read once for all kinds.
    """
    branches = []
    for index, kind in enumerate(kinds):
        if kind == "tags":
            branches.append(_tag_branch(index, shape, adult_ok))
            continue
        doc_type = _DOC_TYPE[kind]
        columns = ["d.norm", "d.alt_norm"] if doc_type == "artist" else ["d.norm"]
        tiers = _tiers(columns, shape, doc_type, adult_ok)
        branches.append(
            _doc_branch(index, doc_type, f"SELECT * FROM ({tiers}) tiers LIMIT %(limit)s")
        )
    return _wrap(branches, adult_ok)


def _lookup_statement(kinds: tuple[str, ...], adult_ok: bool) -> str:
    """Exact key lookups (DID/AT-URI queries): ``%(k<index>)s`` holds each kind's keys."""
    branches = []
    for index, kind in enumerate(kinds):
        doc_type = _DOC_TYPE[kind]
        visible = _doc_visibility(doc_type, adult_ok, hashed=False)
        hits = (
            f"SELECT d.doc_key, 5.0::float8 AS relevance, length(d.norm) AS len"
            f" FROM search_doc d WHERE d.doc_type = '{doc_type}' AND {visible}"
            f" AND d.doc_key = ANY(%(k{index})s) LIMIT %(limit)s"
        )
        branches.append(_doc_branch(index, doc_type, hits))
    return _wrap(branches, adult_ok)


def _wrap(branches: list[str], adult_ok: bool) -> str:
    hidden = hidden_subjects("search", adult_ok=adult_ok)
    union = "\nUNION ALL\n".join(f"({b})" for b in branches)
    return f"""
WITH {_HIDDEN_CTE} AS MATERIALIZED ({hidden}),
     {_HIDDEN_DID} AS MATERIALIZED
       (SELECT subject FROM {_HIDDEN_CTE} WHERE starts_with(subject, 'did:')),
     {_HIDDEN_URI} AS MATERIALIZED
       (SELECT subject FROM {_HIDDEN_CTE} WHERE NOT starts_with(subject, 'did:')),
     {_INACTIVE}
SELECT * FROM ({union}) AS r ({_COLUMNS})
 ORDER BY kind, relevance DESC, len, doc_key
"""


_PLACEHOLDER = re.compile(r"%\((\w+)\)s|%%")


def _numbered(sql: str) -> tuple[str, tuple[str, ...]]:
    """``sql`` with ``$n`` placeholders for its ``%(name)s`` ones, and the names in order."""
    names: list[str] = []

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name is None:
            return "%"
        if name not in names:
            names.append(name)
        return f"${names.index(name) + 1}"

    return _PLACEHOLDER.sub(replace, sql), tuple(names)


# A statement depends only on the types, the query's shape and adult_ok, so it is built
# and numbered once per combination (at most a few hundred): building it and having
# psycopg parse it (it caches no statement over 4 kB) cost ~1 ms of CPU per search.
@functools.lru_cache(maxsize=512)
def _compiled(kinds: tuple[str, ...], shape: str, adult_ok: bool) -> tuple[str, tuple[str, ...]]:
    return _numbered(_statement(kinds, shape, adult_ok))


@functools.lru_cache(maxsize=64)
def _compiled_lookup(kinds: tuple[str, ...], adult_ok: bool) -> tuple[str, tuple[str, ...]]:
    return _numbered(_lookup_statement(kinds, adult_ok))


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


# atproto handle syntax: two or more dot-separated labels, the last not starting with a digit
_HANDLE = re.compile(
    r"^@?((?:[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?\.)+"
    r"[a-zA-Z](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)$"
)


def _handle(q: str) -> str | None:
    """The handle a query spells (``alice.bsky.social``, ``@alice.bsky.social``), if any."""
    match = _HANDLE.match(q.strip())
    return match.group(1) if match else None


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
            "id": str(album_id(row["did"], row["slug"])),
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
            "id": str(list_id(row["uri"])),
            "name": row["title"],
            "owner_handle": row["owner_handle"],
            "owner_display_name": row["owner_name"],
            "image_url": row["image_url"],
            "track_count": row["track_count"],
            "relevance": relevance,
        }
    return {
        "type": "tag",
        "id": tag_id(row["title"]),
        "name": row["title"],
        "track_count": row["track_count"],
        "relevance": relevance,
    }


async def _resolve_handle(conn: AsyncConnection, authority: str) -> str | None:
    """The DID of the artist whose handle is ``authority`` (any case), if there is one."""
    if authority.startswith("did:"):
        return authority
    cur = await conn.execute(
        "SELECT doc_key FROM search_doc WHERE doc_type = 'artist'"
        " AND alt_norm = plyr_search_norm(%s) AND lower(alt) = lower(%s) LIMIT 1",
        (authority, authority),
        prepare=True,
    )
    row = await cur.fetchone()
    return str(row[0]) if row else None


async def _ranked(
    conn: AsyncConnection,
    compiled: tuple[str, tuple[str, ...]],
    params: dict[str, Any],
    kinds: tuple[str, ...],
) -> dict[str, list[dict[str, Any]]]:
    """Run a statement of :func:`_compiled`/:func:`_compiled_lookup`: rows per kind."""
    sql, names = compiled
    cur = AsyncRawCursor(conn, row_factory=dict_row)
    await cur.execute(sql, [params[name] for name in names], prepare=True)
    rows: dict[str, list[dict[str, Any]]] = {kind: [] for kind in kinds}
    for row in await cur.fetchall():
        rows[kinds[row["kind"]]].append(row)
    return rows


def _response(wanted: list[str], rows: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    counts = dict.fromkeys(TYPES, 0)
    results: list[dict[str, Any]] = []
    for kind in wanted:
        found = rows.get(kind, [])
        results += [_present(kind, r) for r in found]
        counts[kind] = len(found)
    results.sort(key=lambda r: r["relevance"], reverse=True)
    return {"results": results, "counts": counts}


async def search(
    conn: AsyncConnection,
    q: str,
    *,
    types: Collection[str] = TYPES,
    limit: int = 20,
    adult_ok: bool = False,
) -> dict[str, Any]:
    """plyr's unified search: ``{results, counts}`` (``limit`` results per type at most).

    One transaction, two round trips: the normalised query (and the settings below), then
    one statement for every requested type. Generic plans: the prefix range and the
    trigram conditions are index conditions on parameters, so the plan does not depend
    on the values, and planning every time would cost more than the query. No parallel
    workers: one search is far too small for them.
    """
    wanted = [t for t in TYPES if t in types]
    keys = _lookup_keys(q)
    if keys is None and (handle := _handle(q)) is not None:
        did = await _resolve_handle(conn, handle)
        if did is not None:
            keys = {"artists": [did]}
    if keys is not None:
        return await _lookup(conn, q, keys, wanted, limit, adult_ok)
    rows: dict[str, list[dict[str, Any]]] = {}
    async with conn.pipeline(), conn.transaction():
        cur = await conn.execute(_SETUP, (q, _FUZZY))
        row = await cur.fetchone()
        terms = _Terms(str(row[0]) if row and row[0] else "")
        if terms.q and wanted:
            kinds = tuple(wanted)
            compiled = _compiled(kinds, terms.shape, adult_ok)
            rows = await _ranked(conn, compiled, terms.params(limit), kinds)
    return _response(wanted, rows)


async def _lookup(
    conn: AsyncConnection,
    q: str,
    keys: dict[str, list[str]],
    wanted: list[str],
    limit: int,
    adult_ok: bool,
) -> dict[str, Any]:
    """Exact lookups for a DID, AT-URI or handle query."""
    if "at://" in q and "artists" in keys:
        authority = keys["artists"][0]
        keys["artists"] = [await _resolve_handle(conn, authority) or authority]
    if "albums" in wanted and keys.get("albums_by_list"):
        cur = await conn.execute(
            "SELECT album_key FROM search_album_member WHERE source_uri = ANY(%s)",
            (keys["albums_by_list"],),
        )
        keys["albums"] = [str(r[0]) for r in await cur.fetchall()]
    kinds = tuple(kind for kind in wanted if keys.get(kind))
    if not kinds:
        return _response(wanted, {})
    params: dict[str, Any] = {f"k{i}": keys[kind] for i, kind in enumerate(kinds)}
    params["limit"] = limit
    rows = await _ranked(conn, _compiled_lookup(kinds, adult_ok), params, kinds)
    return _response(wanted, rows)
