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
import contextlib
import json
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from plyr_appview.ports import free_port  # noqa: E402
from testkit.brokers import fresh_database, start_tansu  # noqa: E402

ATP_DIR = ROOT / "tests" / "e2e" / "atp"
SAMPLES = 100
SPACING = 0.1
POLL = 0.01
GIVE_UP = 60.0


@dataclass
class Pds:
    """A running local PLC + PDS (the e2e tests' network)."""

    pds_url: str
    plc_url: str
    firehose_url: str
    handle_domain: str
    process: subprocess.Popen[bytes]

    @property
    def trusted_hosts(self) -> str:
        urls = (self.plc_url, self.pds_url, self.firehose_url)
        return ",".join(sorted({h for u in urls if (h := urlsplit(u).hostname)}))


@contextlib.contextmanager
def running_pds() -> Iterator[Pds]:
    """Start ``start_pds.js`` on two free ports; stop it by PID afterwards."""
    node = shutil.which("node")
    if node is None or not (ATP_DIR / "node_modules").is_dir():
        raise SystemExit("bench_fresh needs node and `npm ci --prefix tests/e2e/atp`")
    with tempfile.TemporaryDirectory(prefix="bench-fresh-pds-") as data:
        out = Path(data) / "stdout.log"
        env = {
            **os.environ,
            "PLC_PORT": str(free_port()),
            "PDS_PORT": str(free_port()),
            "ATP_DATA": str(Path(data) / "pds"),
            "ATP_ADMIN_PASSWORD": "admin-pass",
            "ATP_EXIT_ON_STDIN_EOF": "1",
        }
        with out.open("wb") as stdout:
            process = subprocess.Popen(
                [node, str(ATP_DIR / "start_pds.js")],
                cwd=ATP_DIR,
                env=env,
                stdin=subprocess.PIPE,
                stdout=stdout,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        try:
            deadline = time.monotonic() + 60
            info = None
            while info is None:
                for line in out.read_text(errors="replace").splitlines():
                    if line.startswith("READY "):
                        info = json.loads(line[len("READY ") :])
                if process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"local PDS did not start:\n{out.read_text()[-2000:]}")
                time.sleep(0.05)
            yield Pds(
                pds_url=str(info["pds"]),
                plc_url=str(info["plc"]),
                firehose_url=str(info["firehose"]),
                handle_domain=str(info["handleDomains"][0]),
                process=process,
            )
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


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


async def _measure(pds: Pds, api_url: str, samples: int) -> list[float]:
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


def _run_mode(mode: str, pds: Pds, samples: int, bootstrap: str | None) -> list[float]:
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
    with running_pds() as pds:
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
