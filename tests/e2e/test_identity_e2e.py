"""Identity end to end on a real local PDS: handles are verified for real, and a profile
written before an artist's first plyr record reaches the API.

The appview asks the local PDS for ``/.well-known/atproto-did`` with the handle as
``Host`` (``PLYR_HANDLE_HOSTS``): the same bidirectional check as on the network, against
a server that really answers it. Without that setting the same handle cannot be verified
and shows as ``handle.invalid``: the check is not switched off.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from testkit.brokers import fresh_database
from testkit.pds import LocalPds
from tests.appview_process import AppviewProcess, wait_until
from tests.e2e.atp_client import AtpClient

pytestmark = pytest.mark.e2e

# A 1x1 PNG: the PDS stores any bytes, the avatar only needs to be a blob.
_PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)


def track(title: str) -> dict[str, object]:
    return {
        "$type": "fm.plyr.track",
        "title": title,
        "artist": "Profile First",
        "fileType": "mp3",
        "audioUrl": "https://audio.example.com/a.mp3",
        "createdAt": "2026-11-20T10:00:00.000Z",
    }


def _env(pds: LocalPds, url: str, *, verify_locally: bool) -> dict[str, str]:
    env = {
        "DATABASE_URL": url,
        "PLYR_FIREHOSE_URL": pds.firehose_url,
        "PLYR_PLC_URL": pds.plc_url,
        "PLYR_TRUSTED_HOSTS": pds.trusted_hosts,
        "PLYR_PARTITIONS": "2",
    }
    if verify_locally:
        env["PLYR_HANDLE_HOSTS"] = pds.handle_hosts
    return env


@pytest.fixture
def appview(pds: LocalPds) -> Iterator[AppviewProcess]:
    with fresh_database() as url:
        app = AppviewProcess(_env(pds, url, verify_locally=True))
        try:
            app.wait_healthy()
            app.wait_for_output("firehose connected")
            yield app
        finally:
            code = app.stop()
            assert code == 0, app.output[-3000:]


async def test_profile_before_first_track_and_verified_handle_reach_the_api(
    appview: AppviewProcess, atp: AtpClient
) -> None:
    account = await atp.create_account(f"pf{uuid.uuid4().hex[:6]}")
    avatar = await atp.upload_blob(account, _PNG, "image/png")
    await atp.put_record(
        account,
        "app.bsky.actor.profile",
        "self",
        {
            "$type": "app.bsky.actor.profile",
            "displayName": "Profile First",
            "description": "written long before any track",
            "avatar": avatar,
        },
    )
    # Only now the first plyr record: the profile commit went by while the repo was unknown.
    await atp.create_record(account, "fm.plyr.track", track("First track"))
    api = httpx.AsyncClient(base_url=appview.base_url, timeout=5)

    async def artist() -> dict[str, Any] | None:
        response = await api.get(f"/artists/by-handle/{account.handle}")
        if response.status_code != 200:
            return None
        body: dict[str, Any] = response.json()
        return body if body["display_name"] == "Profile First" else None

    found = await wait_until(artist, timeout=60, what="artist with the earlier profile")
    assert found["did"] == account.did
    assert found["handle"] == account.handle  # verified against the PDS, for real
    assert found["avatar_url"] is not None
    assert avatar["ref"]["$link"] in found["avatar_url"]


async def test_without_a_way_to_check_the_handle_it_is_invalid(
    pds: LocalPds, atp: AtpClient
) -> None:
    """``.test`` has no DNS and no public HTTPS: unverifiable, so never shown or looked up."""
    account = await atp.create_account(f"nv{uuid.uuid4().hex[:6]}")
    with fresh_database() as url:
        app = AppviewProcess(_env(pds, url, verify_locally=False))
        try:
            app.wait_healthy()
            app.wait_for_output("firehose connected")
            await atp.create_record(account, "fm.plyr.track", track("Unverified"))
            api = httpx.AsyncClient(base_url=app.base_url, timeout=5)

            async def artist() -> dict[str, Any] | None:
                response = await api.get(f"/artists/{account.did}")
                return response.json() if response.status_code == 200 else None

            found = await wait_until(artist, timeout=60, what="artist row")
            assert found["handle"] == "handle.invalid"
            response = await api.get(f"/artists/by-handle/{account.handle}")
            assert response.status_code == 404
        finally:
            code = app.stop()
            assert code == 0, app.output[-3000:]
