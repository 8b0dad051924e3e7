"""The /status page in headless Chromium: not blank, no JavaScript error, no failed
request, under the API's Content-Security-Policy. Skipped where no Chromium is installed
(Debian: ``apt-get install chromium``)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from testkit.brokers import fresh_database
from tests.appview_process import AppviewProcess

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium on PATH (Debian: apt-get install -y chromium)"
)

# The page reports a failed request or a script error in #updated ("refresh failed: …");
# a CSP violation stops the script, so the tables stay at their placeholder text.


def _dump_dom(url: str, profile: Path) -> tuple[str, str]:
    assert CHROMIUM is not None
    done = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            f"--user-data-dir={profile}",
            "--virtual-time-budget=4000",
            "--enable-logging=stderr",
            "--v=0",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done.stdout, done.stderr


def test_status_page_renders_in_chromium(tmp_path: Path):
    with fresh_database() as url:
        app = AppviewProcess(
            {"PLYR_DATA_DIR": str(tmp_path), "DATABASE_URL": url, "PLYR_API_WORKERS": "1"},
            command="serve",
        )
        try:
            app.wait_healthy()
            page = httpx.get(f"{app.base_url}/status", timeout=5)
            assert "content-security-policy" in page.headers
            assert "<script>" not in page.text  # no inline script: the CSP holds as it is
            dom, console = _dump_dom(f"{app.base_url}/status", tmp_path / "profile")
        finally:
            assert app.stop() == 0, app.output[-3000:]
    assert "plyr appview status" in dom, dom[:2000]
    assert "loading…" not in dom, "the script never ran (blank page)"
    assert "refresh failed" not in dom, dom
    assert "updated " in dom
    assert "no projector has run yet" in dom  # the tables were filled from /status.json
    assert "<svg" in dom and "no samples yet" in dom
    for problem in ("Uncaught", "Refused to", "Failed to load resource", "net::ERR_"):
        assert problem not in console, console[-3000:]
    served = [line for line in app.output.splitlines() if '"msg": "request"' in line]
    assert any('"/status.json"' in line and '"status": 200' in line for line in served), served
    assert not any('"status": 4' in line or '"status": 5' in line for line in served), served
