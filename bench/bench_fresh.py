"""Freshness: how long a PDS write takes to be visible through the API, on each log.

Drives the running product as a user would: a real local PDS + PLC (``@atproto/dev-env``,
started with the e2e tests' ``start_pds.js``), ``python -m plyr_appview run`` as a
subprocess following the PDS firehose, on a fresh PostgreSQL database, once with the
PostgreSQL log and once with Kafka (a Tansu broker). For each mode one account writes
``SAMPLES`` tracks, ``SPACING`` s apart; one poller asks ``GET /tracks/by-uri`` for every
track not yet seen, round after round (10 ms apart), from the moment ``createRecord``
returned until the track is there.

Prints ``BENCH fresh.pglog_p50_ms``, ``BENCH fresh.pglog_p99_ms``, ``BENCH fresh.kafka_p50_ms``
and ``BENCH fresh.kafka_p99_ms`` (targets: p50 <= 200 ms, p99 <= 1 s), and the ratio of the
Kafka figures to the PostgreSQL log's measured in the same run.

    python bench/bench_fresh.py [--samples N] [--modes pglog,kafka]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from plyr_appview.ports import free_port  # noqa: E402
from testkit.brokers import fresh_database, start_tansu  # noqa: E402
from testkit.pds import LocalPds, running_pds  # noqa: E402

SAMPLES = 100
SPACING = 0.1
POLL = 0.01
GIVE_UP = 60.0


class Appview:
    """``python -m plyr_appview run`` with a clean environment plus ``env``."""

    def __init__(self, env: dict[str, str]) -> None:
        self.port = free_port()
        base = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("PLYR_", "DATABASE_URL", "KAFKA_"))
        }
        base.update({"PLYR_API_BIND": f"127.0.0.1:{self.port}", "PYTHONPATH": str(ROOT), **env})
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "plyr_appview", "run"],
            cwd=ROOT,
            env=base,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.decode(errors="replace"))

    def wait_for(self, text: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.lines):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"appview never said {text!r}:\n{''.join(self.lines)[-3000:]}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _track(i: int) -> dict[str, object]:
    return {
        "$type": "fm.plyr.track",
        "title": f"Fresh {i}",
        "artist": "Bench Artist",
        "fileType": "mp3",
        "audioUrl": "https://audio.example.com/a.mp3",
        "createdAt": "2026-11-20T10:00:00.000Z",
    }


async def _measure(pds: LocalPds, api_url: str, samples: int) -> list[float]:
    """Write ``samples`` tracks; seconds from each write's acknowledgement to its visibility."""
    async with (
        httpx.AsyncClient(base_url=pds.pds_url + "/xrpc/", timeout=30) as xrpc,
        httpx.AsyncClient(base_url=api_url, timeout=30) as api,
    ):
        handle = f"fresh{secrets.token_hex(3)}{pds.handle_domain}"
        made = await xrpc.post(
            "com.atproto.server.createAccount",
            json={"handle": handle, "email": f"{handle}@example.com", "password": "pw-bench"},
        )
        made.raise_for_status()
        did, auth = made.json()["did"], {"Authorization": f"Bearer {made.json()['accessJwt']}"}

        # One poller for all outstanding writes: a request per outstanding track per round,
        # then a short pause, so a backlog of slow writes does not turn into a request
        # storm that slows the product it measures.
        outstanding: dict[str, float] = {}
        seen: dict[str, float] = {}
        writing = True
        arrived = asyncio.Event()

        async def check(uri: str) -> None:
            got = await api.get("/tracks/by-uri", params={"uri": uri})
            if got.status_code == 200 and uri in outstanding:
                seen[uri] = time.monotonic() - outstanding.pop(uri)
                arrived.set()

        async def poll() -> None:
            while writing or outstanding:
                await asyncio.gather(*(check(uri) for uri in list(outstanding)))
                stale = [u for u, t in outstanding.items() if time.monotonic() - t > GIVE_UP]
                if stale:
                    raise SystemExit(f"{stale[0]} not visible after {GIVE_UP:.0f} s")
                await asyncio.sleep(POLL)

        async def write(i: int) -> str:
            written = await xrpc.post(
                "com.atproto.repo.createRecord",
                json={"repo": did, "collection": "fm.plyr.track", "record": _track(i)},
                headers=auth,
            )
            written.raise_for_status()
            uri = str(written.json()["uri"])
            outstanding[uri] = time.monotonic()
            return uri

        poller = asyncio.create_task(poll())
        # Warm up (first request paths, the account's artist row): not measured.
        warm = await write(-1)
        while warm not in seen:
            await arrived.wait()
            arrived.clear()
        uris: list[str] = []
        for i in range(samples):
            started = time.monotonic()
            uris.append(await write(i))
            await asyncio.sleep(max(0.0, SPACING - (time.monotonic() - started)))
        writing = False
        await poller
        return [seen[uri] for uri in uris]


def _run_mode(mode: str, pds: LocalPds, samples: int, bootstrap: str | None) -> list[float]:
    with fresh_database() as url:
        env = {
            "DATABASE_URL": url,
            "PLYR_FIREHOSE_URL": pds.firehose_url,
            "PLYR_PLC_URL": pds.plc_url,
            "PLYR_TRUSTED_HOSTS": pds.trusted_hosts,
        }
        if mode == "kafka":
            assert bootstrap is not None
            env["KAFKA_BOOTSTRAP"] = bootstrap
            env["PLYR_TOPIC_PREFIX"] = f"fresh{uuid.uuid4().hex[:8]}."
        app = Appview(env)
        try:
            app.wait_for("firehose connected")
            return asyncio.run(_measure(pds, f"http://127.0.0.1:{app.port}", samples))
        finally:
            app.stop()


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=SAMPLES)
    parser.add_argument("--modes", default="pglog,kafka")
    args = parser.parse_args()
    modes = args.modes.split(",")
    figures: dict[str, tuple[float, float]] = {}
    with (
        tempfile.TemporaryDirectory(prefix="bench-fresh-pds-") as data,
        running_pds(Path(data)) as pds,
    ):
        tansu = start_tansu() if "kafka" in modes else None
        try:
            for mode in modes:
                bootstrap = tansu.bootstrap if tansu is not None else None
                lags = [s * 1000 for s in _run_mode(mode, pds, args.samples, bootstrap)]
                p50, p99 = _pct(lags, 0.50), _pct(lags, 0.99)
                figures[mode] = (p50, p99)
                print(f"BENCH fresh.{mode}_p50_ms {p50:.0f} ms")
                print(f"BENCH fresh.{mode}_p99_ms {p99:.0f} ms")
                print(
                    f"  {mode}: {len(lags)} writes, mean {statistics.fmean(lags):.0f} ms,"
                    f" max {max(lags):.0f} ms",
                    flush=True,
                )
        finally:
            if tansu is not None:
                tansu.stop()
    if "kafka" in figures and "pglog" in figures:
        ratio = figures["kafka"][0] / figures["pglog"][0]
        print(f"BENCH fresh.kafka_vs_pglog_p50_ratio {ratio:.2f}")


if __name__ == "__main__":
    main()
