"""``make cluster`` for real: a local PDS writes, the cluster's API shows it, and when one
projector worker is killed the other takes over its partitions with nothing lost or doubled
(the catalog equals listRecords; play reports made after the kill count once each).

The cluster runs as ``python -m plyr_appview.cluster`` (what ``make cluster`` runs): its
supervisor starts moto's S3, Tansu on S3, embedded PostgreSQL, ingest, two ``project --group``
workers, the faust plays worker and two API processes. ``PLYR_CLUSTER_TEST=full``
(``make cluster-test``) writes more.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from kernel.log.base import partition_for
from plyr_appview.ports import free_port
from testkit.pds import LocalPds
from tests.appview_process import wait_for, wait_until
from tests.e2e.atp_client import Account, AtpClient

pytestmark = [pytest.mark.e2e, pytest.mark.kafka]

FULL = os.environ.get("PLYR_CLUSTER_TEST") == "full"
PARTITIONS = 8
TRACKS_BEFORE = 6 if FULL else 2
TRACKS_AFTER = 12 if FULL else 3
TRACK = "fm.plyr.track"


class RunningCluster:
    """The supervisor subprocess and what its ``CLUSTER {json}`` line says."""

    def __init__(self, data_dir: Path, pds: LocalPds) -> None:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("PLYR_", "DATABASE_URL", "KAFKA_"))
        }
        env.update(
            PLYR_FIREHOSE_URL=pds.firehose_url,
            PLYR_PLC_URL=pds.plc_url,
            PLYR_TRUSTED_HOSTS=pds.trusted_hosts,
        )
        if "PLYR_TEST_PG" in os.environ:  # CI's server rather than the embedded one
            env["DATABASE_URL"] = os.environ["PLYR_TEST_PG"]
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "plyr_appview.cluster",
                "--data-dir",
                str(data_dir),
                "--api-port",
                str(two_free_ports()),
                "--partitions",
                str(PARTITIONS),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        threading.Thread(target=self._read, daemon=True).start()
        line = wait_for(self._cluster_line, timeout=90, what="the CLUSTER line")
        self.info: dict[str, Any] = json.loads(line.removeprefix("CLUSTER "))

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self.lines.append(raw.decode(errors="replace"))

    def _cluster_line(self) -> str | None:
        if self.proc.poll() is not None:
            raise AssertionError("cluster exited early:\n" + "".join(self.lines)[-3000:])
        return next((ln for ln in self.lines if ln.startswith("CLUSTER ")), None)

    def process(self, name: str) -> dict[str, Any]:
        found: dict[str, Any] = self.info["processes"][name]
        return found

    def pids(self) -> list[int]:
        return [int(p["pid"]) for p in self.info["processes"].values()]

    def catalog_partitions(self, name: str) -> set[int] | None:
        """The catalog partitions ``name`` was last assigned (from its log), if any."""
        latest: set[int] | None = None
        for line in Path(self.process(name)["log"]).read_text(errors="replace").splitlines():
            if '"partitions assigned"' in line and '"catalog"' in line:
                latest = set(json.loads(line)["partitions"])
        return latest

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def two_free_ports() -> int:
    """A port ``p`` with ``p`` and ``p + 1`` free on 127.0.0.1 (the two API processes)."""
    while True:
        port = free_port()
        try:
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", port + 1))
        except OSError:
            continue
        return port


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not reaped by its exited parent yet) counts as gone.
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(")")[-1].split()[0] == "Z")


def start_cluster(data_dir: Path, pds: LocalPds, attempts: int = 3) -> RunningCluster:
    """A running cluster. Its API ports are picked free a moment before it binds them; a
    process of the machine that took one in between (its exit says "address already in
    use") makes it start again on other ports, ``attempts`` times at most."""
    for attempt in range(attempts - 1):
        try:
            return RunningCluster(data_dir / str(attempt), pds)
        except AssertionError as exc:
            if "address already in use" not in str(exc):
                raise
    return RunningCluster(data_dir / str(attempts - 1), pds)


@pytest.fixture
def cluster(tmp_path: Path, pds: LocalPds) -> Iterator[RunningCluster]:
    running = start_cluster(tmp_path / "cluster", pds)
    try:
        yield running
    finally:
        code = running.stop()
        output = "".join(running.lines)
        assert code == 0, output[-3000:]
        assert "cluster stopped" in output
        wait_for(
            lambda: not any(_alive(p) for p in running.pids()), timeout=5, what="children gone"
        )


def track(title: str) -> dict[str, object]:
    return {
        "$type": TRACK,
        "title": title,
        "artist": "Cluster Artist",
        "fileType": "mp3",
        "audioUrl": "https://audio.example.com/a.mp3",
        "createdAt": "2026-11-20T10:00:00.000Z",
    }


def catalog_rows(url: str, dids: list[str]) -> set[tuple[str, str]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT uri, cid FROM track WHERE did = ANY(%s)", (dids,)).fetchall()
    return {(str(u), str(c)) for u, c in rows}


async def pds_rows(atp: AtpClient, dids: list[str]) -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    for did in dids:
        for rec in await atp.list_records(did, TRACK):
            found.add((str(rec["uri"]), str(rec["cid"])))
    return found


async def test_cluster_serves_writes_and_survives_a_projector_worker(
    cluster: RunningCluster, pds: LocalPds
) -> None:
    url = str(cluster.info["database_url"])
    apis = [cluster.process("api-1")["url"], cluster.process("api-2")["url"]]
    assert cluster.info["plays_worker"] and "plays-worker" in cluster.info["processes"]

    # The two workers share the catalog's partitions between them.
    def settled() -> tuple[set[int], set[int]] | None:
        one, two = cluster.catalog_partitions("project-1"), cluster.catalog_partitions("project-2")
        if one and two and one | two == set(range(PARTITIONS)) and not one & two:
            return one, two
        return None

    doomed, survivor = wait_for(settled, timeout=60, what="catalog partitions split")

    async with AtpClient.for_pds(pds) as atp, httpx.AsyncClient(timeout=5) as http:
        # Accounts on both workers' partitions, at least two on the worker to be killed.
        accounts: list[Account] = []
        while sum(
            partition_for(a.did.encode(), PARTITIONS) in doomed for a in accounts
        ) < 2 or not any(partition_for(a.did.encode(), PARTITIONS) in survivor for a in accounts):
            assert len(accounts) < 16, "no account landed on a partition of each worker"
            accounts.append(await atp.create_account(f"cl{uuid.uuid4().hex[:6]}"))
        dids = [a.did for a in accounts]
        rkeys: dict[str, list[str]] = {}
        for n, account in enumerate(accounts):
            for i in range(TRACKS_BEFORE):
                uri, _ = await atp.create_record(account, TRACK, track(f"before {n}.{i}"))
                rkeys.setdefault(account.did, []).append(uri.rsplit("/", 1)[1])

        async def through_both_apis() -> bool:
            for base in apis:
                for account in accounts:
                    body = await http.get(f"{base}/tracks/", params={"artist_did": account.did})
                    if len(body.json()["tracks"]) != TRACKS_BEFORE:
                        return False
            return True

        await wait_until(through_both_apis, timeout=60, what="every track through both APIs")
        assert catalog_rows(url, dids) == await pds_rows(atp, dids)

        # Kill the worker hard: no drain, no goodbye to the group.
        killed = int(cluster.process("project-1")["pid"])
        os.kill(killed, signal.SIGKILL)
        started = time.monotonic()

        # Writes after the kill: new tracks, an update and a delete on every account.
        for n, account in enumerate(accounts):
            first, second = rkeys[account.did][:2] if TRACKS_BEFORE > 1 else (None, None)
            for i in range(TRACKS_AFTER):
                await atp.create_record(account, TRACK, track(f"after {n}.{i}"))
            if first and second:
                await atp.put_record(account, TRACK, first, track(f"updated {n}"))
                await atp.delete_record(account, TRACK, second)
        expected = await pds_rows(atp, dids)
        assert len(expected) == len(accounts) * (
            TRACKS_BEFORE + TRACKS_AFTER - (1 if TRACKS_BEFORE > 1 else 0)
        )

        async def caught_up() -> bool:
            return catalog_rows(url, dids) == expected

        await wait_until(caught_up, timeout=90, what="catalog equal to listRecords after the kill")
        took_over = cluster.catalog_partitions("project-2")
        assert took_over == set(range(PARTITIONS)), took_over

        # Nothing doubled: each API lists every account's tracks exactly once.
        for base in apis:
            for account in accounts:
                body = (
                    await http.get(f"{base}/tracks/", params={"artist_did": account.did})
                ).json()
                uris = [t["atproto_record_uri"] for t in body["tracks"]]
                assert len(uris) == len(set(uris))
                assert {(u, c) for u, c in expected if u in uris} == {
                    (t["atproto_record_uri"], t["atproto_record_cid"]) for t in body["tracks"]
                }
                assert len(uris) == sum(1 for u, _ in expected if f"/{account.did}/" in u)
        # Play reports through both APIs after the kill: three listeners (a client, so a
        # cookie, each) per account's first track; each counts exactly once.
        played = []
        for account in accounts:
            body = (await http.get(f"{apis[0]}/tracks/", params={"artist_did": account.did})).json()
            played.append(int(body["tracks"][0]["id"]))
        for listener in range(3):
            async with httpx.AsyncClient(base_url=apis[listener % 2], timeout=5) as browser:
                for tid in played:
                    assert (await browser.post(f"/tracks/{tid}/play")).status_code == 200

        async def counted() -> bool:
            for tid in played:
                count = (await http.get(f"{apis[1]}/tracks/{tid}")).json()["play_count"]
                assert count <= 3, f"track {tid}: {count} plays from 3 listeners"
                if count != 3:
                    return False
            return True

        await wait_until(counted, timeout=60, what="3 plays on every played track")
        with psycopg.connect(url) as conn:
            letters = conn.execute("SELECT count(*) FROM dead_letter").fetchone()
        assert letters == (0,)
        print(f"takeover: caught up {time.monotonic() - started:.1f} s after the kill")
