"""``repo_record``: what we last published of each repo, record by record.

A ``getRepo`` resync diffs the repo against it (:mod:`ingest.diff`), so every source that
publishes record envelopes keeps it current after the log acknowledged them
(:class:`~ingest.publisher.Publisher` does, for all of them).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from kernel.envelope import Envelope
from kernel.revs import rev_sql

__all__ = ["known_records", "remember_records"]


async def known_records(pool: AsyncConnectionPool, did: str) -> dict[tuple[str, str], str]:
    """What we last published of ``did``: (collection, rkey) → cid."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT collection, rkey, cid FROM repo_record WHERE did = %s", (did,)
        )
        return {(c, r): cid for c, r, cid in await cur.fetchall()}


async def remember_records(
    target: AsyncConnectionPool | AsyncConnection[Any], envelopes: Sequence[Envelope]
) -> None:
    """Keep ``repo_record`` current after ``envelopes`` are on the log (any source).

    Per record the last envelope wins; a row only moves to a newer-or-equal rev, so a
    late replay does not roll it back. Non-record envelopes are ignored.
    """
    final: dict[tuple[str, str, str], tuple[str | None, str | None]] = {}
    for env in envelopes:
        if env.collection is None or env.rkey is None or not env.kind.startswith("record."):
            continue
        cid = None if env.kind == "record.deleted" else env.cid
        final[(env.did, env.collection, env.rkey)] = (cid, env.rev)
    if not final:
        return
    upserts = [(k, v) for k, v in final.items() if v[0] is not None]
    deletes = [(k, v) for k, v in final.items() if v[0] is None]

    # The rows travel as one JSON array (jsonb: parsed once, not per ->>): psycopg's list
    # adapter costs ~1 us per element and column in Python, orjson ~50 ns per row.
    async def write(conn: AsyncConnection[Any]) -> None:
        if upserts:
            await conn.execute(
                "INSERT INTO repo_record (did, collection, rkey, cid, rev)"
                " SELECT r->>0, r->>1, r->>2, r->>3, r->>4 FROM jsonb_array_elements(%s::jsonb) r"
                " ON CONFLICT (did, collection, rkey) DO UPDATE SET cid = excluded.cid,"
                " rev = excluded.rev WHERE repo_record.rev IS NULL OR excluded.rev IS NULL"
                f" OR {rev_sql('excluded.rev', '>=', 'repo_record.rev')}",
                (orjson.dumps([(*k, *v) for k, v in upserts]).decode(),),
            )
        if deletes:
            await conn.execute(
                "DELETE FROM repo_record r USING (SELECT d->>0 AS did, d->>1 AS collection,"
                " d->>2 AS rkey, d->>3 AS rev FROM jsonb_array_elements(%s::jsonb) d) AS d"
                " WHERE r.did = d.did AND r.collection = d.collection AND r.rkey = d.rkey"
                f" AND (r.rev IS NULL OR d.rev IS NULL OR {rev_sql('d.rev', '>=', 'r.rev')})",
                (orjson.dumps([(*k, v[1]) for k, v in deletes]).decode(),),
            )

    if isinstance(target, AsyncConnectionPool):
        async with target.connection() as conn, conn.transaction():
            await write(conn)
    else:
        await write(target)
