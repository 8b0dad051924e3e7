"""Backfill throughput: getRepo CAR files → verified, diffed envelopes on the PostgreSQL log.

Generates realistic repos (default 50 repos × 1000 ``fm.plyr.*`` records plus 200
``app.bsky.feed.like`` records each, proper MSTs, signed commits) as CAR files in a temp
dir, then measures in the same run, on a fresh database:

- ours: ``Backfill.apply_repo`` per repo (read the file, verify the commit signature, walk
  the MST pruning other collections, decode kept records, diff against ``repo_record``,
  publish in batches of 2000, update ``repo_record`` set-based, end the backfill), 4
  repos at a time;
- baseline: the atproto SDK's stock path (``CAR.from_bytes``, a walk over its decoded
  blocks, ``libipld`` record decoding) with per-record publishing (one log append and
  one ``repo_record`` upsert per record, as a per-event consumer would), on the first
  repos only.

Prints ``BENCH ingest.backfill_rps``, ``BENCH ingest.backfill_baseline_rps`` and
``BENCH ingest.backfill_ratio_vs_baseline``. Needs the system PostgreSQL (as the tests).
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
import orjson
from atproto_core.car import CAR
from atproto_core.cid import CID

from ingest.backfill import Backfill
from ingest.commits import CollectionFilter
from ingest.handles import HandleVerifier
from ingest.repo_record import remember_records
from ingest.repos import RepoStates
from kernel.db import open_pool
from kernel.envelope import Envelope
from kernel.fetch import UpstreamFetcher
from kernel.identity import DidDocument, DidResolver
from kernel.log.postgres import PostgresLog
from testkit.brokers import create_database, drop_database
from testkit.identity import SigningKey, did_document, did_for, tid
from testkit.repos import repo_car

REPOS = int(os.environ.get("BENCH_REPOS", "50"))
RECORDS = int(os.environ.get("BENCH_RECORDS", "1000"))
OTHER = int(os.environ.get("BENCH_OTHER_RECORDS", "200"))
BASELINE_REPOS = int(os.environ.get("BENCH_BASELINE_REPOS", "3"))
TOPIC = "plyr.repo"
KEEP = CollectionFilter.of(["fm.plyr.*"])


def make_records(n: int) -> dict[str, dict[str, Any]]:
    records: dict[str, dict[str, Any]] = {}
    for i in range(n):
        rkey = tid(1_700_000_000_000_000 + i * 7919)
        if i % 5 == 4:
            records[f"fm.plyr.like/{rkey}"] = {
                "$type": "fm.plyr.like",
                "subject": {
                    "uri": f"at://{did_for(str(i))}/fm.plyr.track/{tid(i)}",
                    "cid": "bafyreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku",
                },
                "createdAt": "2026-11-01T12:00:00.000Z",
            }
        else:
            records[f"fm.plyr.track/{rkey}"] = {
                "$type": "fm.plyr.track",
                "title": f"Track number {i} of a long and winding album",
                "artist": "Some Artist With A Name",
                "album": "An Album",
                "fileType": "mp3",
                "duration": 200 + i % 100,
                "features": [{"did": did_for(f"feat{i % 3}"), "handle": "feat.test"}],
                "audioBlob": {
                    "$type": "blob",
                    "ref": {"$link": "bafkreibme22gw2h7y2h7tg2fhqotaqjucnbc24deqo72b6mkl2egezxhvy"},
                    "mimeType": "audio/mpeg",
                    "size": 4_000_000 + i,
                },
                "description": "A track description " * 3,
                "createdAt": "2026-11-01T12:00:00.000Z",
            }
    for i in range(OTHER):
        records[f"app.bsky.feed.like/{tid(1_800_000_000_000_000 + i)}"] = {
            "$type": "app.bsky.feed.like",
            "subject": {"uri": f"at://{did_for('x')}/app.bsky.feed.post/{tid(i)}", "cid": "bafy"},
            "createdAt": "2026-11-01T12:00:00.000Z",
        }
    return records


def generate(directory: Path) -> tuple[list[tuple[str, Path, DidDocument]], dict[str, bytes]]:
    """The repos (DID, CAR file, parsed document) and the PLC directory's answers."""
    out = []
    plc: dict[str, bytes] = {}
    template = make_records(RECORDS)
    for n in range(REPOS):
        did = did_for(f"bench-repo-{n}")
        key = SigningKey()
        path = directory / f"{n}.car"
        path.write_bytes(repo_car(did, template, key, rev=tid(2_000_000_000_000_000 + n)))
        out.append((did, path, DidDocument(did, f"r{n}.test", "http://pds", None, key.did_key)))
        plc[f"/{did}"] = orjson.dumps(did_document(did, key, f"r{n}.test", "http://pds"))
    return out, plc


def plc_fetcher(plc: dict[str, bytes], txt: dict[str, list[str]]) -> UpstreamFetcher:
    """The product's guarded fetcher over an in-process PLC directory and DNS."""

    def directory(request: httpx.Request) -> httpx.Response:
        body = plc.get(request.url.path)
        if body is None:
            return httpx.Response(404, stream=httpx.ByteStream(b""))
        return httpx.Response(200, stream=httpx.ByteStream(body))

    async def lan(host: str, port: int) -> list[str]:
        return ["10.0.0.7"]

    async def answer(name: str) -> list[str]:
        return txt.get(name, [])

    return UpstreamFetcher(
        client=httpx.AsyncClient(transport=httpx.MockTransport(directory)),
        trusted_hosts=frozenset({"plc.bench"}),
        lookup=lan,
        txt_lookup=answer,
    )


def sdk_records(car: CAR) -> list[tuple[str, str, str, dict[str, Any]]]:
    """The SDK path: CAR.from_bytes blocks, an MST walk over them, every record decoded."""
    commit = car.blocks[car.root]
    out: list[tuple[str, str, str, dict[str, Any]]] = []
    by_str = {str(cid): block for cid, block in car.blocks.items()}

    def link(raw: bytes) -> str:
        return str(CID.from_decoded_bytes(raw))

    def visit(cid: str) -> None:
        node = by_str[cid]
        if node.get("l") is not None:
            visit(link(node["l"]))
        previous = b""
        for entry in node["e"]:
            key = previous[: entry["p"]] + entry["k"]
            previous = key
            collection, rkey = key.decode().split("/", 1)
            if KEEP(collection):
                value = link(entry["v"])
                out.append((collection, rkey, value, by_str[value]))
            if entry.get("t") is not None:
                visit(link(entry["t"]))

    visit(link(commit["data"]))
    return out


async def main() -> None:
    name, url = create_database()
    pool = await open_pool(url, max_size=12)
    try:
        log = PostgresLog(pool, partitions=8, topics=[TOPIC])
        await log.start()
        states = RepoStates(pool)
        await states.load()
        with tempfile.TemporaryDirectory() as tmp:
            started = time.perf_counter()
            repos, plc = generate(Path(tmp))
            print(
                f"generated {REPOS} repos in {time.perf_counter() - started:.1f}s", file=sys.stderr
            )
            # DID documents from an in-process PLC directory; every handle verifies through
            # its DNS TXT record (answered in-process): the product's resolver and verifier.
            txt = {f"_atproto.{doc.handle}": [f"did={did}"] for did, _, doc in repos}
            fetcher = plc_fetcher(plc, txt)
            backfill = Backfill(
                pool=pool,
                log=log,
                topic=TOPIC,
                keep=KEEP,
                states=states,
                resolver=DidResolver(fetcher, "http://plc.bench"),
                fetcher=fetcher,
                handles=HandleVerifier(fetcher),
            )
            gate = asyncio.Semaphore(4)

            async def one(did: str, path: Path, doc: DidDocument) -> int:
                async with gate:
                    await states.begin_backfill(did)
                    return await backfill.apply_repo(
                        did, await asyncio.to_thread(path.read_bytes), doc
                    )

            started = time.perf_counter()
            counts = await asyncio.gather(*(one(*r) for r in repos))
            ours_s = time.perf_counter() - started
            ours_records = sum(counts)
            assert ours_records == REPOS * RECORDS, ours_records

            # Baseline on fresh DIDs (a different topic, so nothing is diffed away).
            base_records = 0
            started = time.perf_counter()
            for n, (_, path, _) in enumerate(repos[:BASELINE_REPOS]):
                car = CAR.from_bytes(path.read_bytes())
                did = f"did:plc:baseline{n:016d}"
                rev = str(car.blocks[car.root]["rev"])
                for collection, rkey, cid, record in sdk_records(car):
                    env = Envelope(
                        kind="record.created",
                        did=did,
                        source="baseline",
                        time="t",
                        rev=rev,
                        collection=collection,
                        rkey=rkey,
                        cid=cid,
                        record=_json(record),
                        backfill=True,
                    )
                    await log.append("plyr.baseline", [(env.key, env.to_bytes())])
                    await remember_records(pool, [env])
                    base_records += 1
            base_s = time.perf_counter() - started
    finally:
        await pool.close()
        drop_database(name)
    ours_rps = ours_records / ours_s
    base_rps = base_records / base_s
    print(
        f"ours: {ours_records} records from {REPOS} CAR files in {ours_s:.2f}s; "
        f"baseline: {base_records} records in {base_s:.2f}s",
        file=sys.stderr,
    )
    print(f"BENCH ingest.backfill_rps {ours_rps:.0f} records/s")
    print(f"BENCH ingest.backfill_baseline_rps {base_rps:.0f} records/s")
    print(f"BENCH ingest.backfill_ratio_vs_baseline {ours_rps / base_rps:.1f} x")


def _json(value: Any) -> Any:
    """libipld values → JSON-able (CIDs and bytes as atjson), as a per-record consumer must."""
    if isinstance(value, dict):
        return {k: _json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json(v) for v in value]
    if isinstance(value, bytes):
        import base64

        return {"$bytes": base64.b64encode(value).decode()}
    if not isinstance(value, str | int | float | bool) and value is not None:
        return {"$link": str(value)}
    return value


if __name__ == "__main__":
    asyncio.run(main())
