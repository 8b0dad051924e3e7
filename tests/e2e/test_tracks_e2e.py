"""Walking skeleton end to end: a real PDS → firehose → ingest → log → projector → API.

Run once with the PostgreSQL log (embedded-style) and once with Kafka (Tansu).
"""

from __future__ import annotations

import uuid

import httpx
import pytest

from projectors.base import track_id
from tests.appview_process import AppviewProcess, wait_until
from tests.e2e.atp_client import AtpClient

pytestmark = pytest.mark.e2e


def record(title: str) -> dict[str, object]:
    return {
        "$type": "fm.plyr.track",
        "title": title,
        "artist": "E2E Artist",
        "fileType": "mp3",
        "audioUrl": "https://audio.example.com/a.mp3",
        "createdAt": "2026-11-20T10:00:00.000Z",
    }


async def test_track_create_update_delete_reach_the_api(appview: AppviewProcess, atp: AtpClient):
    account = await atp.create_account(f"e2e{uuid.uuid4().hex[:6]}")
    uri, cid = await atp.create_record(account, "fm.plyr.track", record("First take"))
    rkey = uri.rsplit("/", 1)[1]
    api = httpx.AsyncClient(base_url=appview.base_url, timeout=5)

    async def listed() -> list[dict[str, object]] | None:
        body = (await api.get("/tracks/", params={"artist_did": account.did})).json()
        return body["tracks"] or None

    (track,) = await wait_until(listed, what="created track in /tracks/")
    assert track["title"] == "First take"
    assert track["atproto_record_uri"] == uri
    assert track["atproto_record_cid"] == cid
    assert track["id"] == track_id(uri)
    assert track["artist_did"] == account.did
    assert track["artist_handle"] == account.handle

    await atp.put_record(account, "fm.plyr.track", rkey, record("Second take"))

    async def updated() -> dict[str, object] | None:
        body = (await api.get(f"/tracks/{track_id(uri)}")).json()
        return body if body.get("title") == "Second take" else None

    assert (await wait_until(updated, what="updated title"))["atproto_record_cid"] != cid

    await atp.delete_record(account, "fm.plyr.track", rkey)

    async def gone() -> bool:
        return (await api.get(f"/tracks/{track_id(uri)}")).status_code == 404

    await wait_until(gone, what="deletion")
    listing = await api.get("/tracks/", params={"artist_did": account.did})
    assert listing.json()["tracks"] == []
    await api.aclose()
