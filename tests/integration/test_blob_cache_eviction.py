"""The local blob store's size cap on a real directory: least-recently-used eviction, the
count shared by processes, stale scratch files (no tmpfs needed: the caps are small)."""

from __future__ import annotations

import asyncio
import hashlib
import multiprocessing
import os
import random
import tempfile
import time
from pathlib import Path

import pytest

from api.blobstore import SCRATCH_STALE_S, TOUCH_S, LocalBlobStore


def _scratch(store: LocalBlobStore, data: bytes) -> Path:
    fd, name = tempfile.mkstemp(dir=store.scratch)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    return Path(name)


async def _put(store: LocalBlobStore, name: str, data: bytes) -> None:
    await store.put_file(f"audio/{name}", _scratch(store, data), "audio/mpeg")


def _age(store: LocalBlobStore, name: str, seconds: float) -> None:
    """Last used ``seconds`` ago."""
    then = time.time() - seconds
    os.utime(store.root / "audio" / name, (then, then))


def _cached(store: LocalBlobStore) -> list[str]:
    return sorted(p.name for p in (store.root / "audio").iterdir())


def _count(store: LocalBlobStore) -> int:
    return int((store.root / ".audio-bytes").read_text())


async def test_least_recently_used_objects_are_evicted_to_make_room(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path, max_bytes=1000)
    for name in "abc":
        await _put(store, name, bytes(300))
    for name, seconds in (("a", 3000), ("b", 2000), ("c", 1000)):
        _age(store, name, seconds)
    assert await store.size("audio/a") == 300  # a use: "a" is now the most recent
    assert await store.make_room(300)
    # Down to 90% of the cap with the new object: the least recently used one goes.
    assert _cached(store) == ["a", "c"]
    await _put(store, "d", bytes(300))
    assert _cached(store) == ["a", "c", "d"] and _count(store) == 900
    # Stored without asking first (size unknown): others are evicted, never the new one.
    _age(store, "d", 500)
    await _put(store, "e", bytes(300))
    assert _cached(store) == ["a", "d", "e"] and _count(store) == 900


async def test_no_inode_count_is_no_inode_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """btrfs reports no inodes at all (``f_files`` 0): statvfs is faked, since no such
    filesystem can be mounted here."""
    store = LocalBlobStore(tmp_path, max_bytes=1000)
    await _put(store, "a", bytes(300))
    real = os.statvfs(tmp_path)
    fields = [getattr(real, f"f_{n}") for n in _STATVFS_FIELDS]
    fields[_STATVFS_FIELDS.index("files")] = fields[_STATVFS_FIELDS.index("favail")] = 0
    monkeypatch.setattr(os, "statvfs", lambda path: os.statvfs_result(fields))
    assert await store.make_room(300)
    await _put(store, "b", bytes(300))
    assert _cached(store) == ["a", "b"]


_STATVFS_FIELDS = ("bsize", "frsize", "blocks", "bfree", "bavail", "files", "ffree", "favail",
                   "flag", "namemax")  # fmt: skip


async def test_a_use_refreshes_an_object_at_most_every_few_minutes(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path, max_bytes=1000)
    await _put(store, "a", bytes(10))
    _age(store, "a", TOUCH_S - 60)
    before = (tmp_path / "audio" / "a").stat().st_mtime
    await store.size("audio/a")
    assert (tmp_path / "audio" / "a").stat().st_mtime == before  # not written on every read
    _age(store, "a", TOUCH_S + 60)
    await store.size("audio/a")
    assert (tmp_path / "audio" / "a").stat().st_mtime > time.time() - 60


async def test_an_open_object_streams_whole_after_its_eviction(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path, max_bytes=1000)
    await _put(store, "a", b"0123456789" * 30)
    body = await store.read("audio/a", 5, 294)
    (tmp_path / "audio" / "a").unlink()  # another worker evicts it
    assert b"".join([c async for c in body]) == (b"0123456789" * 30)[5:295]
    with pytest.raises(FileNotFoundError):
        await store.read("audio/a", 0, 9)  # gone before it is opened: said before streaming


async def test_what_cannot_fit_even_in_an_empty_cache_evicts_nothing(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path, max_bytes=1000)
    await _put(store, "a", bytes(600))
    assert not await store.make_room(1001)
    assert _cached(store) == ["a"]
    assert await store.make_room(1000)  # fits once "a" is gone
    assert _cached(store) == []


async def test_the_count_is_shared_and_corrected_by_a_listing(tmp_path: Path) -> None:
    first = LocalBlobStore(tmp_path, max_bytes=1000)
    second = LocalBlobStore(tmp_path, max_bytes=1000)
    await _put(first, "a", bytes(400))
    await _put(second, "b", bytes(400))
    assert _count(first) == 800
    # The first store's next room sees the second's object: it evicts rather than overshoot.
    _age(first, "a", 100)
    assert await first.make_room(400)
    assert _cached(first) == ["b"]
    # A count left short (a process killed between write and count) is redone by the next
    # process's first listing.
    (tmp_path / ".audio-bytes").write_text("0")
    third = LocalBlobStore(tmp_path, max_bytes=1000)
    await third.make_room(1)
    assert _count(third) == 400


async def test_stale_scratch_files_go_and_downloads_in_progress_stay(tmp_path: Path) -> None:
    scratch = tmp_path / ".incoming"
    scratch.mkdir()
    now = time.time()
    idle_for = {"killed": SCRATCH_STALE_S + 60, "slow": SCRATCH_STALE_S - 60, "new": 0}
    for name, idle in idle_for.items():
        (scratch / name).write_bytes(b"partial")
        os.utime(scratch / name, (now - idle, now - idle))
    store = LocalBlobStore(tmp_path, max_bytes=1000)
    assert sorted(p.name for p in scratch.iterdir()) == ["new", "slow"]
    # Eviction clears them too (a process killed since this one started).
    os.utime(scratch / "slow", (now - SCRATCH_STALE_S - 1, now - SCRATCH_STALE_S - 1))
    await _put(store, "a", bytes(900))
    assert await store.make_room(900)
    assert sorted(p.name for p in scratch.iterdir()) == ["new"]


_CAP = 64 * 1024
_PAYLOADS = [random.Random(i).randbytes(2000 + 170 * i) for i in range(60)]


def _worker(root: str, seed: int, rounds: int) -> None:
    """One API worker's writes and reads on the shared directory (run in its own process)."""

    async def run() -> None:
        store = LocalBlobStore(Path(root), max_bytes=_CAP)
        rng = random.Random(seed)
        for _ in range(rounds):
            data = rng.choice(_PAYLOADS)  # the same objects as the other process: races
            key = "audio/" + hashlib.sha256(data).hexdigest()
            if await store.size(key) is None:
                assert await store.make_room(len(data))
                await store.put_file(key, _scratch(store, data), "audio/mpeg")
            try:
                got = b"".join([c async for c in await store.read(key, 0, len(data) - 1)])
            except FileNotFoundError:
                continue  # evicted by the other process meanwhile
            assert got == data  # an open file is whole even when it is being evicted

    asyncio.run(run())


def test_two_processes_share_one_directory_within_the_cap(tmp_path: Path) -> None:
    # A download in progress in a third process: its scratch file must survive.
    LocalBlobStore(tmp_path, max_bytes=_CAP)
    (tmp_path / ".incoming" / "in-progress").write_bytes(b"partial")
    spawn = multiprocessing.get_context("spawn")
    workers = [spawn.Process(target=_worker, args=(str(tmp_path), s, 300)) for s in (1, 2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
    assert [w.exitcode for w in workers] == [0, 0]
    sizes = 0
    for path in (tmp_path / "audio").iterdir():
        data = path.read_bytes()
        assert hashlib.sha256(data).hexdigest() == path.name, "a partial or mixed object"
        sizes += len(data)
    assert 0 < sizes <= _CAP
    assert _count(LocalBlobStore(tmp_path, max_bytes=_CAP)) == sizes
    assert [p.name for p in (tmp_path / ".incoming").iterdir()] == ["in-progress"]
