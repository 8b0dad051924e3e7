"""``plyr-appview archive | trim | query | rebuild --from-archive`` on a real database."""

from __future__ import annotations

import asyncio

from kernel.db import open_pool
from kernel.log.postgres import PostgresLog
from plyr_appview.cli import main
from testkit.events import catalog_event_mix


async def test_archive_trim_query_and_rebuild_from_archive(pg_url, monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("DATABASE_URL", pg_url)
    monkeypatch.setenv("PLYR_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("PLYR_PARTITIONS", "2")
    for name in ("PLYR_S3_BUCKET", "PLYR_LOG_BACKEND", "KAFKA_BOOTSTRAP", "PLYR_TOPIC_PREFIX"):
        monkeypatch.delenv(name, raising=False)
    events = catalog_event_mix(300, seed=9)
    pool = await open_pool(pg_url)
    try:
        log = PostgresLog(pool, partitions=2, topics=["plyr.repo"])
        await log.start()
        await log.append("plyr.repo", [(e.key, e.to_bytes()) for e in events])

        async def count(query: str) -> int:
            async with pool.connection() as conn:
                cur = await conn.execute(query)
                row = await cur.fetchone()
                assert row is not None
                return int(row[0])

        assert await asyncio.to_thread(main, ["rebuild", "catalog"]) == 0
        tracks = await count("SELECT count(*) FROM track")
        assert tracks > 0

        assert await asyncio.to_thread(main, ["archive"]) == 0
        err = capsys.readouterr().err
        assert f"archive holds {len(events):,} events" in err
        assert f'"task": "archive", "done": {len(events)}' in err  # progress, as a log line
        assert (tmp_path / "archive" / "manifest.json").is_file()
        assert await asyncio.to_thread(main, ["trim", "--topic", "repo", "--before-archived"]) == 0
        assert f"deleted {len(events):,} archived events" in capsys.readouterr().out
        assert await count("SELECT count(*) FROM log_message") == 0

        sql = "SELECT kind, count(*) AS n FROM repo GROUP BY kind ORDER BY kind"
        assert await asyncio.to_thread(main, ["query", sql]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert lines[0] == "kind\tn"
        assert sum(int(line.split("\t")[1]) for line in lines[1:]) == len(events)
        assert await asyncio.to_thread(main, ["query", "SELECT nope FROM repo"]) == 1
        err = capsys.readouterr().err
        assert err.startswith("query error:") and "nope" in err and "Traceback" not in err

        # The log holds nothing now: every event comes from the archive.
        async with pool.connection() as conn:
            await conn.execute("TRUNCATE track")
        assert await asyncio.to_thread(main, ["rebuild", "catalog", "--from-archive"]) == 0
        assert await count("SELECT count(*) FROM track") == tracks
        await log.close()
    finally:
        await pool.close()
