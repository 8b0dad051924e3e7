"""Backfill against the real local PDS: repos that existed before the appview started.

1. Records are written before any appview runs; ``run`` starts with no cursor, so it
   backfills (discovery through ``listRepos`` on the PDS, ``getRepo``, signature check,
   MST walk) and the tracks appear through the API.
2. With the appview stopped, one track is deleted and one created on the PDS;
   ``plyr-appview backfill`` (``PLYR_BACKFILL_DIDS``) diffs the repo against the
   records we published and puts a ``record.deleted`` and a ``record.created``, both
   marked ``backfill``, on the log.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import httpx
import psycopg
import pytest

from testkit.brokers import fresh_database
from testkit.pds import LocalPds
from tests.appview_process import AppviewProcess, wait_until
from tests.e2e.atp_client import AtpClient

pytestmark = pytest.mark.e2e


def record(title: str) -> dict[str, object]:
    return {
        "$type": "fm.plyr.track",
        "title": title,
        "artist": "Backfill Artist",
        "fileType": "mp3",
        "audioUrl": "https://audio.example.com/a.mp3",
        "createdAt": "2026-11-20T10:00:00.000Z",
    }


@pytest.fixture
def env(pds: LocalPds) -> Iterator[dict[str, str]]:
    with fresh_database() as url:
        yield {
            "DATABASE_URL": url,
            "PLYR_FIREHOSE_URL": pds.firehose_url,
            "PLYR_PLC_URL": pds.plc_url,
            "PLYR_TRUSTED_HOSTS": pds.trusted_hosts,
            "PLYR_HANDLE_HOSTS": pds.handle_hosts,
            "PLYR_PARTITIONS": "2",
        }


async def test_existing_repos_are_backfilled_and_deletes_diffed(
    env: dict[str, str], atp: AtpClient
) -> None:
    account = await atp.create_account(f"bf{uuid.uuid4().hex[:6]}")
    kept, _ = await atp.create_record(account, "fm.plyr.track", record("Old one"))
    gone, _ = await atp.create_record(account, "fm.plyr.track", record("Soon deleted"))

    app = AppviewProcess(env)
    try:
        app.wait_healthy()
        async with httpx.AsyncClient(base_url=app.base_url, timeout=5) as api:

            async def both() -> list[dict[str, object]] | None:
                body = (await api.get("/tracks/", params={"artist_did": account.did})).json()
                return body["tracks"] if len(body["tracks"]) == 2 else None

            tracks = await wait_until(both, timeout=90, what="backfilled tracks in /tracks/")
            assert {t["atproto_record_uri"] for t in tracks} == {kept, gone}
            assert {t["artist_handle"] for t in tracks} == {account.handle}
    finally:
        assert app.stop() == 0, app.output[-3000:]

    await atp.delete_record(account, "fm.plyr.track", gone.rsplit("/", 1)[1])
    new, _ = await atp.create_record(account, "fm.plyr.track", record("Made while away"))

    backfill = AppviewProcess({**env, "PLYR_BACKFILL_DIDS": account.did}, command="backfill")
    code = backfill.proc.wait(timeout=120)
    backfill.stop()
    assert code == 0, backfill.output[-3000:]

    with psycopg.connect(env["DATABASE_URL"]) as conn:
        rows = conn.execute(
            "SELECT value FROM log_message WHERE topic = 'plyr.repo' ORDER BY partition, \"offset\""
        ).fetchall()
    mine = [json.loads(bytes(v)) for (v,) in rows]
    mine = [e for e in mine if e["did"] == account.did and e.get("backfill")]
    kinds = [(e["kind"], e.get("uri")) for e in mine]
    assert ("record.created", kept) in kinds
    assert ("record.deleted", gone) in kinds, kinds
    assert ("record.created", new) in kinds, kinds
    assert kinds.index(("record.created", gone)) < kinds.index(("record.deleted", gone))
