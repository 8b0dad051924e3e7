"""Crash safety end to end: SIGKILL the ingesting process mid-stream, restart it, and the read
models end exactly as a fresh rebuild of the same stretch of the real PDS's firehose.

Both appviews (``plyr-appview run``: ingest + projectors + API, PostgreSQL log) start from
the same firehose cursor, taken just before the activity; the first one is killed with
SIGKILL while accounts create/update/delete tracks, change a handle, deactivate,
reactivate and delete an account, then restarted; the second one runs once, after
everything, from that cursor. Every commit on the way is signature-verified against the
local PLC's DID documents.
"""

from __future__ import annotations

import asyncio
import signal
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest

from testkit.brokers import fresh_database
from testkit.pds import LocalPds
from tests.appview_process import AppviewProcess, wait_until
from tests.e2e.atp_client import Account, AtpClient, FirehoseRecorder

pytestmark = pytest.mark.e2e

READ_MODELS = ("track", "artist", "album", "like", "comment", "list", "list_item")


def track(title: str) -> dict[str, object]:
    return {
        "$type": "fm.plyr.track",
        "title": title,
        "artist": "Crash Test",
        "fileType": "mp3",
        "audioUrl": "https://audio.example.com/a.mp3",
        "createdAt": "2026-11-20T10:00:00.000Z",
    }


def post(text: str) -> dict[str, object]:
    return {"$type": "app.bsky.feed.post", "text": text, "createdAt": "2026-11-20T10:00:00.000Z"}


@contextmanager
def appview(pds: LocalPds, url: str, source: str, cursor: int) -> Iterator[dict[str, str]]:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO ingest_cursor (source, cursor) VALUES (%s, %s)", (source, cursor))
    yield {
        "DATABASE_URL": url,
        "PLYR_FIREHOSE_URL": pds.firehose_url,
        "PLYR_PLC_URL": pds.plc_url,
        "PLYR_TRUSTED_HOSTS": pds.trusted_hosts,
        "PLYR_HANDLE_HOSTS": pds.handle_hosts,
        "PLYR_PARTITIONS": "4",
    }


def snapshot(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Rows of the read models, without time columns (those say when, not what)."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    with psycopg.connect(url) as conn:
        for table in READ_MODELS:
            cols = [
                row[0]
                for row in conn.execute(
                    "SELECT column_name FROM information_schema.columns WHERE table_name = %s"
                    " AND table_schema = 'public' AND data_type NOT LIKE 'timestamp%%'"
                    " ORDER BY ordinal_position",
                    (table,),
                ).fetchall()
            ]
            if not cols:
                continue
            quoted = ", ".join(f'"{c}"' for c in cols)
            rows = conn.execute(f'SELECT {quoted} FROM "{table}"').fetchall()
            out[table] = sorted(rows, key=repr)
    return out


def caught_up(url: str, source: str, seq: int) -> bool:
    """The cursor passed ``seq`` and every projector read the whole repo topic."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT cursor FROM ingest_cursor WHERE source = %s", (source,)
        ).fetchone()
        if row is None or row[0] < seq:
            return False
        lagging = conn.execute(
            "SELECT count(*) FROM log_partition p JOIN projector_offset o"
            " ON o.topic = p.topic AND o.partition = p.partition"
            " WHERE p.topic = 'plyr.repo' AND o.next_offset < p.next_offset"
        ).fetchone()
        missing = conn.execute(
            "SELECT count(*) FROM log_partition p WHERE p.topic = 'plyr.repo'"
            " AND p.next_offset > 0 AND NOT EXISTS (SELECT 1 FROM projector_offset o"
            " WHERE o.topic = p.topic AND o.partition = p.partition)"
        ).fetchone()
    return bool(lagging and lagging[0] == 0 and missing and missing[0] == 0)


async def marker(atp: AtpClient, recorder: FirehoseRecorder, account: Account) -> int:
    """Write a post and return its firehose seq once the firehose shows it."""
    uri, _ = await atp.create_record(account, "app.bsky.feed.post", post(uuid.uuid4().hex))
    rkey = uri.rsplit("/", 1)[1]
    event = await recorder.wait_for(
        lambda e: (
            e.type == "#commit"
            and any(op.get("path", "").endswith(rkey) for op in e.body.get("ops", []))
        ),
        timeout=30,
    )
    assert event.seq is not None
    return event.seq


async def test_sigkill_mid_stream_then_restart_equals_a_fresh_rebuild(
    pds: LocalPds, atp: AtpClient
) -> None:
    source = "firehose:" + pds.firehose_url.split("//", 1)[1].split("/", 1)[0]
    tag = uuid.uuid4().hex[:5]
    async with FirehoseRecorder(pds.firehose_url, cursor=0) as recorder:
        spare = await atp.create_account(f"m{tag}")
        start = await marker(atp, recorder, spare)
        with fresh_database() as url_a, fresh_database() as url_b:
            with appview(pds, url_a, source, start) as env_a:
                first = AppviewProcess(env_a)
                try:
                    first.wait_for_output("firehose connected")
                    people = [await atp.create_account(f"k{tag}{i}") for i in range(4)]
                    a, b, c, d = people
                    uris = {}
                    for i, who in enumerate(people):
                        uris[i] = (await atp.create_record(who, "fm.plyr.track", track(f"t{i}")))[0]
                        await atp.create_record(who, "app.bsky.feed.post", post(f"p{i}"))
                    extra, _ = await atp.create_record(a, "fm.plyr.track", track("extra"))
                    await atp.put_record(
                        a, "fm.plyr.track", uris[0].rsplit("/", 1)[1], track("t0 v2")
                    )

                    # Mid-stream: kill -9 while writes keep coming.
                    first.stop(sig=signal.SIGKILL, timeout=10)
                    assert first.proc.returncode == -signal.SIGKILL
                    await atp.delete_record(a, "fm.plyr.track", extra.rsplit("/", 1)[1])
                    await atp.update_handle(b, f"r{tag}.{atp.handle_for('x').split('.', 1)[1]}")
                    await atp.deactivate_account(c)
                    await atp.create_record(b, "fm.plyr.track", track("while down"))
                finally:
                    first.stop(sig=signal.SIGKILL, timeout=10)

                second = AppviewProcess(env_a)
                try:
                    second.wait_for_output("firehose connected")
                    await atp.activate_account(c)
                    await atp.put_record(
                        c, "fm.plyr.track", uris[2].rsplit("/", 1)[1], track("t2 v2")
                    )
                    await atp.delete_account(d)
                    await atp.create_record(a, "fm.plyr.track", track("after restart"))
                    end = await marker(atp, recorder, spare)
                    await wait_until(
                        lambda: asyncio.to_thread(caught_up, url_a, source, end),
                        timeout=90,
                        what="restarted appview caught up",
                    )
                finally:
                    assert second.stop() == 0, second.output[-3000:]
                # A restart replays from the last saved cursor: commits already applied come
                # again and are dropped as stale; nothing else may be refused.
                refused = [
                    line
                    for line in (first.output + second.output).splitlines()
                    if "firehose input refused" in line and '"reason": "stale_rev"' not in line
                ]
                assert refused == []

            with appview(pds, url_b, source, start) as env_b:
                rebuild = AppviewProcess(env_b)
                try:
                    await wait_until(
                        lambda: asyncio.to_thread(caught_up, url_b, source, end),
                        timeout=90,
                        what="fresh rebuild caught up",
                    )
                finally:
                    assert rebuild.stop() == 0, rebuild.output[-3000:]

            resumed, fresh = snapshot(url_a), snapshot(url_b)
            assert resumed["track"], "nothing was indexed"
            titles = sorted(str(r) for r in resumed["track"])
            assert any("after restart" in t for t in titles)
            assert any("while down" in t for t in titles)
            assert resumed == fresh
