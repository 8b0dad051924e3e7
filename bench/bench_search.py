"""Search at 100k tracks / 20k artists: ours vs plyr.fm's query shape, same data, same run.

Builds a fresh database (testkit's: the system PostgreSQL or ``PLYR_TEST_PG``), bulk-loads
generated documents with COPY (names with accents, punctuation and CJK),
then runs a few hundred realistic queries (exact titles, prefixes, typos, accent-stripped
names, CJK) through

- ours: ``api.search.search`` (all five types, tiered index-driven queries + moderation),
- plyr.fm's shape on plyr-like tables: per type ``similarity(col, q) > 0.1 OR
  lower(translate(col, …)) LIKE '%q%'`` ranked by the exact/prefix/substring/fuzzy CASE,
  which cannot use the trigram indexes plyr has on those columns.

Prints ``BENCH search.p95_ms``, ``BENCH search.plyr_p95_ms``, ``BENCH search.ratio_vs_plyr``
(plus p50s). ``--explain`` also prints EXPLAIN ANALYZE of our track queries.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
import unicodedata
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from api.search import _compiled, _Terms, search
from projectors.base import track_id
from testkit.brokers import fresh_database

N_TRACKS = 100_000
N_ARTISTS = 20_000
N_QUERIES = 300
PLYR_BUDGET_S = 75.0

ADJ = """black blue golden silent broken electric midnight crimson velvet wild lonely
neon hollow burning frozen sweet bitter distant endless fading falling rising secret
sacred savage gentle restless northern southern paper glass iron silver violet amber
lucky stolen sleeping dancing dying living empty heavy tender quiet loud cosmic lunar
solar urban rural modern ancient little big last first final lost hidden open""".split()
NOUN = """heart river moon sun night dream fire rain road city ocean star sky shadow
light storm garden mirror window door highway summer winter autumn spring echo ghost
angel devil machine radio signal wave tide mountain valley desert forest island harbor
engine letter song melody rhythm voice whisper thunder lightning rose flower bird wolf
tiger horse train station bridge tower castle kingdom empire planet galaxy universe
memory promise secret lie truth love soul mind body blood bone stone glass gold""".split()
VERB = """dancing running falling waiting dreaming burning breaking chasing leaving
calling singing crying flying hiding losing finding holding touching walking""".split()
ACCENTED = """Sigur Rós|Björk|Beyoncé|Motörhead|Mötley Crüe|José González|Zoë Kravitz
|Ólafur Arnalds|Héloïse Letissier|Chloë Sevigny|Françoise Hardy|Édith Piaf|Ståle Storløkken
|Jóhann Jóhannsson|Röyksopp|Mø|Dvořák|Léo Ferré|Amadou & Mariam|Nuñez|Céu|Mañana""".replace(
    "\n", ""
).split("|")
PUNCT = """AC/DC|R.E.M.|Guns N' Roses|N.W.A|Sunn O)))|!!!|Panic! at the Disco|P!nk
|M.I.A.|Jay-Z|Wu-Tang Clan|t.A.T.u.|Florence + the Machine|Earth, Wind & Fire|Ke$ha
|Godspeed You! Black Emperor|Crosby, Stills & Nash|Simon & Garfunkel""".replace("\n", "").split("|")
CJK_NAMES = (
    "宇多田ヒカル 坂本龍一 椎名林檎 米津玄師 久石譲 中島みゆき 周杰倫 王菲 鄧麗君 東京事変".split()
)
CJK_WORDS = """千と千尋 神隠し 夜明け 桜 雨の日 東京 夢 月光 風の谷 青い空 恋 花火 星空 海辺
さよなら 約束 光 影 秋の夜 冬の花 春風 夏祭り 北京 上海 香港 台北 心 愛 涙 未来""".split()
FIRST = """John Maria Anna Pierre Sofia Lukas Emma Noah Mia Léa Chloé Zoë José Ángel
Søren Åsa Jürgen Müller Renée Noël Inès Amélie Björn Jens Kai Yuki Hana Mei Li""".split()
LAST = """Smith García Müller Rossi Dubois Nakamura Kim Silva Novák Andersson Jensen
Brown Davis Lefèvre Öztürk Łukasz Ødegaard Ibáñez Gonçalves Nguyễn Kowalski""".split()


def artist_names(rng: random.Random, n: int) -> list[str]:
    names: list[str] = list(ACCENTED) + list(PUNCT) + list(CJK_NAMES)
    seen = set(names)
    while len(names) < n:
        roll = rng.random()
        if roll < 0.35:
            name = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
        elif roll < 0.6:
            name = f"The {rng.choice(ADJ).title()} {rng.choice(NOUN).title()}s"
        elif roll < 0.8:
            name = f"{rng.choice(ADJ).title()} {rng.choice(NOUN).title()}"
        elif roll < 0.9:
            name = rng.choice(CJK_WORDS) + rng.choice(CJK_WORDS)
        else:
            name = f"{rng.choice(NOUN).title()}{rng.choice(['', '.', '/', '-', ' & '])}" + (
                rng.choice(NOUN).title()
            )
        if name in seen:
            name = f"{name} {rng.randint(2, 999)}"
        seen.add(name)
        names.append(name)
    return names


def title(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.25:
        t = f"{rng.choice(ADJ).title()} {rng.choice(NOUN).title()}"
    elif roll < 0.45:
        where = rng.choice(["in the", "on the", "with the", "for the"])
        t = f"{rng.choice(VERB).title()} {where} {rng.choice(NOUN).title()}"
    elif roll < 0.6:
        t = f"{rng.choice(NOUN).title()} of {rng.choice(NOUN).title()}"
    elif roll < 0.7:
        t = f"Don't {rng.choice(VERB).title()} My {rng.choice(NOUN).title()}"
    elif roll < 0.8:
        t = rng.choice(CJK_WORDS) + rng.choice(["", "の", "と"]) + rng.choice(CJK_WORDS)
    elif roll < 0.9:
        t = f"{rng.choice(NOUN).title()} ({rng.choice(['Remix', 'Live', 'Demo', 'Acoustic'])})"
    else:
        t = f"{rng.choice(ADJ).title()} {rng.choice(NOUN).title()}, Pt. {rng.randint(1, 4)}"
    return t


def strip_accents(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


def typo(rng: random.Random, text: str) -> str:
    words = [w for w in text.split() if len(w) >= 5]
    if not words:
        return text
    word = rng.choice(words)
    i = rng.randrange(1, len(word) - 1)
    broken = word[:i] + word[i + 1 :] if rng.random() < 0.5 else word[:i] + word[i] + word[i:]
    return text.replace(word, broken, 1)


def queries(rng: random.Random, titles: list[str], artists: list[str]) -> list[tuple[str, str]]:
    latin_titles = [t for t in titles if t.isascii()]
    cjk_titles = [t for t in titles if not t.isascii()]
    out: list[tuple[str, str]] = []
    for _ in range(70):
        out.append(("exact", rng.choice(latin_titles)))
    for _ in range(20):
        out.append(("exact", rng.choice(artists)))
    for _ in range(70):
        src = rng.choice(latin_titles + artists)
        out.append(("prefix", src[: rng.randint(2, 6)]))
    for _ in range(60):
        out.append(("typo", typo(rng, rng.choice(latin_titles))))
    for _ in range(40):
        out.append(("accent", strip_accents(rng.choice(ACCENTED + FIRST[10:] + LAST[5:]))))
    for _ in range(40):
        t = rng.choice(cjk_titles)
        out.append(("cjk", t[: rng.randint(2, len(t))]))
    out = [(k, q.strip()) for k, q in out if len(q.strip()) >= 2][:N_QUERIES]
    rng.shuffle(out)
    return out


def copy_rows(
    conn: psycopg.Connection, table: str, columns: list[str], rows: Sequence[tuple[object, ...]]
) -> None:
    stmt = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns))
    )
    with conn.cursor() as cur, cur.copy(stmt) as copy:
        for row in rows:
            copy.write_row(row)


PLYR_SCHEMA = """
CREATE TABLE plyr_artists (did text PRIMARY KEY, handle text NOT NULL, display_name text NOT NULL,
    avatar_url text);
CREATE TABLE plyr_albums (id text PRIMARY KEY, artist_did text NOT NULL, title text NOT NULL,
    slug text NOT NULL, image_url text);
CREATE TABLE plyr_tracks (id bigint PRIMARY KEY, title text NOT NULL, artist_did text NOT NULL,
    album_id text, image_url text, visibility text NOT NULL DEFAULT 'public');
CREATE TABLE plyr_tags (id serial PRIMARY KEY, name text NOT NULL UNIQUE);
CREATE TABLE plyr_track_tags (track_id bigint, tag_id int, PRIMARY KEY (track_id, tag_id));
CREATE TABLE plyr_playlists (id text PRIMARY KEY, name text NOT NULL, owner_did text NOT NULL,
    image_url text, track_count int NOT NULL DEFAULT 0, is_private boolean NOT NULL DEFAULT false);
CREATE INDEX ON plyr_tracks USING gin (title gin_trgm_ops);
CREATE INDEX ON plyr_tracks (album_id);
CREATE INDEX ON plyr_artists USING gin (handle gin_trgm_ops);
CREATE INDEX ON plyr_artists USING gin (display_name gin_trgm_ops);
CREATE INDEX ON plyr_albums USING gin (title gin_trgm_ops);
CREATE INDEX ON plyr_tags USING gin (name gin_trgm_ops);
"""

_QUOTES_FROM, _QUOTES_TO = "’‘“”", "''\"\""


def _plyr_norm(col: str) -> str:
    return (
        f"lower(translate({col}, '{_QUOTES_FROM}', '{_QUOTES_TO.replace(chr(39), chr(39) * 2)}'))"
    )


def _plyr_rel(col: str) -> str:
    n = _plyr_norm(col)
    ws = f"word_similarity(%(nq)s, {n})"
    return (
        f"CASE WHEN {n} = %(nq)s THEN 5.0 WHEN {n} LIKE %(prefix)s THEN 3.0 + {ws}"
        f" WHEN {n} LIKE %(infix)s THEN 1.5 + {ws} ELSE {ws} END"
    )


def _plyr_match(col: str) -> str:
    return f"(similarity({col}, %(q)s) > 0.1 OR {_plyr_norm(col)} LIKE %(infix)s)"


PLYR_QUERIES = [
    f"""SELECT t.id, t.title, a.handle, a.display_name, t.image_url,
               {_plyr_rel("t.title")} AS relevance
        FROM plyr_tracks t JOIN plyr_artists a ON t.artist_did = a.did
        WHERE {_plyr_match("t.title")} AND t.visibility != 'private'
        ORDER BY relevance DESC LIMIT 20""",
    f"""SELECT a.did, a.handle, a.display_name, a.avatar_url,
               greatest({_plyr_rel("a.handle")}, {_plyr_rel("a.display_name")}) AS relevance
        FROM plyr_artists a WHERE {_plyr_match("a.handle")} OR {_plyr_match("a.display_name")}
        ORDER BY relevance DESC LIMIT 20""",
    f"""SELECT al.id, al.title, al.slug, a.handle, a.display_name, al.image_url,
               {_plyr_rel("al.title")} AS relevance
        FROM plyr_albums al JOIN plyr_artists a ON al.artist_did = a.did
        WHERE {_plyr_match("al.title")}
          AND EXISTS (SELECT 1 FROM plyr_tracks t WHERE t.album_id = al.id LIMIT 1)
        ORDER BY relevance DESC LIMIT 20""",
    f"""SELECT tg.id, tg.name, coalesce(c.n, 0), {_plyr_rel("tg.name")} AS relevance
        FROM plyr_tags tg LEFT JOIN (SELECT tag_id, count(track_id) n FROM plyr_track_tags
             GROUP BY tag_id) c ON c.tag_id = tg.id
        WHERE {_plyr_match("tg.name")} ORDER BY relevance DESC LIMIT 20""",
    f"""SELECT p.id, p.name, a.handle, a.display_name, p.image_url, p.track_count,
               {_plyr_rel("p.name")} AS relevance
        FROM plyr_playlists p JOIN plyr_artists a ON p.owner_did = a.did
        WHERE {_plyr_match("p.name")} AND p.is_private = false
        ORDER BY relevance DESC LIMIT 20""",
]


def plyr_params(q: str) -> dict[str, str]:
    quotes: dict[str, str | int | None] = {"’": "'", "‘": "'", "“": '"', "”": '"'}
    nq = q.translate(str.maketrans(quotes)).lower().strip()
    esc = nq.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return {"q": q, "nq": nq, "prefix": esc + "%", "infix": "%" + esc + "%"}


# A search_doc row, in the order of doc_cols in load().
DocRow = tuple[str, str, str, str | None, int | None, str, str | None, str | None, int, str | None]


def load(url: str, rng: random.Random) -> tuple[list[str], list[str]]:
    names = artist_names(rng, N_ARTISTS)
    dids = [f"did:plc:{i:024d}" for i in range(N_ARTISTS)]
    handles = [
        "".join(c for c in strip_accents(n).lower() if c.isalnum())[:20] or f"u{i}"
        for i, n in enumerate(names)
    ]
    handles = [f"{h}{i}.bsky.social" for i, h in enumerate(handles)]
    doc_cols = ["doc_type", "doc_key", "did", "uri", "item_id", "title", "alt", "slug",
                "track_count", "created_at"]  # fmt: skip
    docs: list[DocRow] = []
    members: list[tuple[str, str, str, str, str, int, str]] = []
    plyr_tracks: list[tuple[object, ...]] = []
    plyr_albums: dict[str, tuple[object, ...]] = {}
    titles: list[str] = []
    for did, name, handle in zip(dids, names, handles, strict=True):
        docs.append(("artist", did, did, did, None, name, handle, None, 0, None))
    album_titles: dict[str, str] = {}
    for i in range(N_TRACKS):
        did = dids[
            int(rng.paretovariate(1.2)) % N_ARTISTS
            if rng.random() < 0.5
            else rng.randrange(N_ARTISTS)
        ]
        t = title(rng)
        titles.append(t)
        uri = f"at://{did}/fm.plyr.track/3k{i:011d}"
        tid = track_id(uri)
        docs.append(("track", uri, did, uri, tid, t, None, None, 0, "2026-01-01T00:00:00Z"))
        album_id = None
        if rng.random() < 0.3:
            album = album_titles.setdefault(
                did, f"{rng.choice(ADJ).title()} {rng.choice(NOUN).title()}s"
            )
            slug = album.lower().replace(" ", "-")
            key = f"{did} {slug}"
            members.append((key, uri, did, "track", album, 0, "2026-01-01T00:00:00Z"))
            album_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"at://{did}/album/{slug}"))
            plyr_albums[album_id] = (album_id, did, album, slug, None)
        plyr_tracks.append((tid, t, did, album_id, None))
    album_docs: dict[str, list[Any]] = {}  # key -> [did, album, track count]
    for key, _uri, did, _k, album, _n, _c in members:
        entry = album_docs.setdefault(key, [did, album, 0])
        entry[2] += 1
    for key, (did, album, count) in album_docs.items():
        docs.append(("album", key, did, None, None, album, None, key.split(" ", 1)[1], count, None))
    playlists = []
    for i in range(2000):
        did = rng.choice(dids)
        uri = f"at://{did}/fm.plyr.list/3p{i:011d}"
        name = f"{rng.choice(ADJ).title()} {rng.choice(['Mix', 'Vibes', 'Playlist', 'Jams'])}"
        docs.append(("playlist", uri, did, uri, None, name, None, None, 10, None))
        playlists.append((str(uuid.uuid5(uuid.NAMESPACE_URL, uri)), name, did, None, 10, False))

    with psycopg.connect(url, autocommit=True) as conn:
        copy_rows(conn, "search_doc", doc_cols, docs)
        copy_rows(
            conn,
            "search_album_member",
            ["album_key", "source_uri", "did", "kind", "title", "item_count", "created_at"],
            members,
        )
        copy_rows(
            conn,
            "artist",
            ["did", "handle", "display_name", "account_status"],
            [
                (d, h, n, "deactivated" if i % 97 == 0 else "active")
                for i, (d, h, n) in enumerate(zip(dids, handles, names, strict=True))
            ],
        )
        # moderation: takedowns, copyright, adult self-labels, deactivated accounts
        track_uris = [d[1] for d in docs if d[0] == "track"]
        labelled = rng.sample(track_uris, 2000)
        copy_rows(
            conn,
            "moderation_label",
            ["src", "uri", "val", "neg", "cts"],
            [
                ("did:plc:operator", u, v, False, "2026-01-01T00:00:00Z")
                for u, v in zip(
                    labelled[:600], ["!takedown", "copyright-violation", "porn"] * 200, strict=True
                )
            ],
        )
        copy_rows(
            conn,
            "moderation_self_label",
            ["uri", "did", "vals"],
            [(u, u.split("/")[2], ["sexual"]) for u in labelled[600:]],
        )
        copy_rows(
            conn,
            "moderation_account",
            ["did", "status"],
            [(d, "deactivated") for i, d in enumerate(dids) if i % 101 == 0],
        )
        conn.execute(PLYR_SCHEMA)
        plyr_artists = [(d, h, n, None) for d, h, n in zip(dids, handles, names, strict=True)]
        copy_rows(conn, "plyr_artists", ["did", "handle", "display_name", "avatar_url"],
                  plyr_artists)  # fmt: skip
        copy_rows(conn, "plyr_albums", ["id", "artist_did", "title", "slug", "image_url"],
                  list(plyr_albums.values()))  # fmt: skip
        copy_rows(conn, "plyr_tracks", ["id", "title", "artist_did", "album_id", "image_url"],
                  plyr_tracks)  # fmt: skip
        playlist_cols = ["id", "name", "owner_did", "image_url", "track_count", "is_private"]
        copy_rows(conn, "plyr_playlists", playlist_cols, playlists)
        conn.execute("VACUUM ANALYZE")
    return titles, names


def p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def measure_ours(url: str, qs: list[tuple[str, str]]) -> list[float]:
    conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
    try:
        for _, q in qs[:20]:  # warm the caches
            await search(conn, q)
        times = []
        for _, q in qs:
            start = time.perf_counter()
            await search(conn, q)
            times.append((time.perf_counter() - start) * 1000)
        return times
    finally:
        await conn.close()


async def measure_plyr(url: str, qs: list[tuple[str, str]]) -> list[float]:
    conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
    try:
        for _, q in qs[:3]:
            for stmt in PLYR_QUERIES:
                await conn.execute(stmt, plyr_params(q), prepare=False)
        times = []
        deadline = time.monotonic() + PLYR_BUDGET_S
        for _, q in qs:
            start = time.perf_counter()
            for stmt in PLYR_QUERIES:
                cur = await conn.execute(stmt, plyr_params(q), prepare=False)
                await cur.fetchall()
            times.append((time.perf_counter() - start) * 1000)
            if time.monotonic() > deadline:
                break
        return times
    finally:
        await conn.close()


# Queries that reach each tier: exact + prefix + substring + fuzzy (a title), the short
# word-start tier (two letters), fuzzy (a typo), CJK substring; artists: name and handle.
EXPLAIN_QUERIES = [
    ("tracks", "Midnight Harbor"),
    ("tracks", "me"),
    ("tracks", "Brokn Engine"),
    ("tracks", "千と千尋"),
    ("artists", "Beyonce"),
]


async def explain(url: str) -> None:
    """EXPLAIN (ANALYZE, BUFFERS) of our statements as they run: prepared, generic plan."""
    conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
    try:
        await conn.execute("SET plan_cache_mode = force_generic_plan")
        await conn.execute("SET max_parallel_workers_per_gather = 0")
        for i, (kind, q) in enumerate(EXPLAIN_QUERIES):
            cur = await conn.execute("SELECT plyr_search_norm(%s)", (q,))
            row = await cur.fetchone()
            assert row is not None
            terms = _Terms(row[0])
            params = terms.params(20)
            text, names = _compiled((kind,), terms.shape, False)
            types = ", ".join("int" if n == "limit" else "text" for n in names)
            await conn.execute(f"PREPARE q{i}({types}) AS {text}")
            args = ", ".join(sql.quote(params[n]) for n in names)
            await conn.execute(f"EXECUTE q{i}({args})")  # the generic plan is now cached
            cur = await conn.execute(f"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE q{i}({args})")
            print(f"---- EXPLAIN ANALYZE (generic plan) {kind} q={q!r}")
            print("\n".join(r[0] for r in await cur.fetchall() if "never executed" not in r[0]))
        await conn.execute("RESET plan_cache_mode")
        cur = await conn.execute(
            "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + PLYR_QUERIES[0],
            plyr_params("Midnight Harbor"),
        )
        print("---- EXPLAIN ANALYZE plyr tracks q='Midnight Harbor'")
        print("\n".join(r[0] for r in await cur.fetchall()))
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--explain", action="store_true")
    args = parser.parse_args()
    started = time.perf_counter()
    rng = random.Random(20261101)
    with fresh_database() as url:
        titles, artists = load(url, rng)
        loaded = time.perf_counter() - started
        qs = queries(rng, titles, artists)
        ours = asyncio.run(measure_ours(url, qs))
        plyr = asyncio.run(measure_plyr(url, qs))
        if args.explain:
            asyncio.run(explain(url))
    by_kind: dict[str, list[float]] = {}
    for (kind, _), ms in zip(qs, ours, strict=True):
        by_kind.setdefault(kind, []).append(ms)
    print(f"# {N_TRACKS} tracks, {N_ARTISTS} artists; loaded in {loaded:.1f} s; "
          f"{len(ours)} queries ours, {len(plyr)} plyr (same order); CPU shared")  # fmt: skip
    for kind, values in sorted(by_kind.items()):
        print(f"# ours {kind:7s} n={len(values):3d} p50={statistics.median(values):6.2f} ms"
              f" p95={p(values, 0.95):6.2f} ms")  # fmt: skip
    ours_p95, plyr_p95 = p(ours, 0.95), p(plyr, 0.95)
    print(f"BENCH search.p50_ms {statistics.median(ours):.2f} ms")
    print(f"BENCH search.p95_ms {ours_p95:.2f} ms")
    print(f"BENCH search.plyr_p50_ms {statistics.median(plyr):.2f} ms")
    print(f"BENCH search.plyr_p95_ms {plyr_p95:.2f} ms")
    print(f"BENCH search.ratio_vs_plyr {plyr_p95 / ours_p95:.1f} x")
    print(f"# total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
