"""Network scrobbles end to end with a real local PDS: an artist publishes a track, a
listener (an account that publishes nothing of plyr's) writes an ``fm.teal.feed.play``
naming its page; the track's ``play_count`` goes up through the API; deleting the scrobble
brings it back down. The listener never becomes a known repo."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import psycopg
import pytest

from kernel.ids import track_id
from testkit.brokers import fresh_database
from testkit.pds import LocalPds
from tests.appview_process import AppviewProcess, wait_until
from tests.e2e.atp_client import AtpClient

pytestmark = pytest.mark.e2e

FRONT = "https://plyr.e2e.example"


@pytest.fixture
def appview(pds: LocalPds) -> Iterator[tuple[AppviewProcess, str]]:
    with fresh_database() as url:
        env = {
            "DATABASE_URL": url,
            "PLYR_FIREHOSE_URL": pds.firehose_url,
            "PLYR_PLC_URL": pds.plc_url,
            "PLYR_TRUSTED_HOSTS": pds.trusted_hosts,
            "PLYR_PARTITIONS": "4",
            "PLYR_FRONTEND_URL": FRONT,
            "PLYR_API_CACHE_ENTRIES": "0",
        }
        app = AppviewProcess(env)
        try:
            app.wait_healthy()
            app.wait_for_output("firehose connected")
            yield app, url
        finally:
            code = app.stop()
            assert code == 0, app.output[-3000:]


async def test_a_listeners_scrobble_counts_and_its_delete_uncounts(
    appview: tuple[AppviewProcess, str], atp: AtpClient
) -> None:
    app, db_url = appview
    artist = await atp.create_account(f"art{uuid.uuid4().hex[:6]}")
    listener = await atp.create_account(f"lis{uuid.uuid4().hex[:6]}")
    uri, _ = await atp.create_record(
        artist,
        "fm.plyr.track",
        {
            "$type": "fm.plyr.track",
            "title": "Scrobbled Song",
            "artist": "E2E Scrobble Artist",
            "fileType": "mp3",
            "audioUrl": "https://audio.example.com/a.mp3",
            "duration": 200,
            "createdAt": "2026-11-20T10:00:00.000Z",
        },
    )
    tid = track_id(uri)
    api = httpx.AsyncClient(base_url=app.base_url, timeout=5)

    async def play_count() -> int | None:
        response = await api.get(f"/tracks/{tid}")
        return response.json()["play_count"] if response.status_code == 200 else None

    await wait_until(lambda: _is(play_count, 0), what="track with 0 plays")
    play_uri, _ = await atp.create_record(
        listener,
        "fm.teal.feed.play",
        {
            "$type": "fm.teal.feed.play",
            "trackName": "Scrobbled Song",
            "artists": [{"artistName": "E2E Scrobble Artist"}],
            "originUri": f"{FRONT}/track/{tid}",
            "musicServiceUri": "https://plyr.fm",
            "playedTime": "2026-11-20T10:05:00.000Z",
            "duration": 200,
        },
    )
    await wait_until(lambda: _is(play_count, 1), what="play_count 1 after the scrobble")
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT play_id, listener, source FROM play").fetchall() == [
            (play_uri, listener.did, "network")
        ]
        # a listener, not an artist: not a known repo, nothing else of it kept
        assert conn.execute(
            "SELECT count(*) FROM repo_state WHERE did = %s", (listener.did,)
        ).fetchone() == (0,)
        assert conn.execute(
            "SELECT count(*) FROM artist WHERE did = %s", (listener.did,)
        ).fetchone() == (0,)
    await atp.delete_record(listener, "fm.teal.feed.play", play_uri.rsplit("/", 1)[1])
    await wait_until(lambda: _is(play_count, 0), what="play_count 0 after the delete")
    await api.aclose()


async def _is(read, value: int) -> bool | None:
    return True if await read() == value else None
