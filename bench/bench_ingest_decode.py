"""Firehose decode + filter throughput: our ingest path vs the atproto SDK's stock path.

Traffic: generated ``#commit`` frames shaped like relay traffic: 99.5% ``app.bsky.*``
(posts, likes, follows), 0.5% ``fm.plyr.track`` creates, each a signed commit block, the
new nodes of a real MST (about 5: each repo holds 100+ records) and the record block in a
CAR, 200 repos with their own keys.

- ours: what :meth:`ingest.firehose.FirehoseIngest.handle_frame` does per frame, minus
  the log and database I/O: raw-bytes triage (seq + repo read from the bytes, op paths
  searched for ``fm.plyr.``); the matching commits fully decoded, CAR read with every
  block hash checked, the commit signature verified (key from a warm resolver cache, as in
  steady state), the ops proven against the signed MST root, the envelopes built and
  serialised.
- SDK: what its ``FirehoseSubscribeReposClient`` does per message (``Frame.from_bytes`` and
  the message-frame check, as ``_decode_frame``), then ``parse_subscribe_repos_message``,
  then ``CAR.from_bytes(commit.blocks)`` for each commit, as in its docs. No filtering and
  no verification (the SDK firehose path does neither).

Both run on the same frames in the same process; figures are frames per CPU second of
this process (``time.process_time``), so other load on a shared machine distorts them
less than wall time would. Prints ``BENCH ingest.decode_fps``, ``ingest.sdk_decode_fps``,
``ingest.decode_ratio_vs_sdk``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ingest.car import read_car
from ingest.commits import CollectionFilter, Triage, commit_envelopes
from ingest.frames import CommitEvent, decode_frame
from ingest.verify import KeyCache, check_commit, check_ops
from kernel.config import DEFAULT_COLLECTIONS
from testkit.firehose_server import mixed_traffic

FRAMES = 4000
SECONDS = 4.0


def our_path(keys: dict[str, str], *, prove: bool = True) -> Callable[[bytes], int]:
    """The ingest path; ``prove=False`` leaves out the MST proof (only to show its cost)."""
    keep = CollectionFilter.of(DEFAULT_COLLECTIONS)
    triage = Triage(keep)
    cache = KeyCache()
    known: set[str] = set()

    def handle(raw: bytes) -> int:
        skip = triage.skip(raw)
        if skip is not None and skip[1] not in known:
            return skip[0]
        event = decode_frame(raw)
        if not isinstance(event, CommitEvent):
            return 0
        wanted = keep.wanted(event.ops)
        if not wanted:
            return event.seq
        _, blocks = read_car(event.blocks)
        verified = check_commit(event, blocks, keys[event.repo], cache)
        if prove:
            check_ops(blocks, verified.data_cid, wanted)
        for envelope in commit_envelopes(event, keep, "bench", blocks):
            envelope.to_bytes()
        return event.seq

    return handle


def sdk_path() -> Callable[[bytes], int]:
    from atproto import CAR, models, parse_subscribe_repos_message
    from atproto_subscription.frames import Frame, MessageFrame

    def handle(raw: bytes) -> int:
        frame = Frame.from_bytes(raw)
        if not isinstance(frame, MessageFrame):
            return 0
        commit = parse_subscribe_repos_message(frame)
        if not isinstance(commit, models.ComAtprotoSyncSubscribeRepos.Commit):
            return 0
        if commit.blocks:
            CAR.from_bytes(commit.blocks)
        return int(commit.seq)

    return handle


def measure(handle: Callable[[bytes], int], frames: list[bytes], rounds: int = 3) -> float:
    """Frames per CPU second, best of ``rounds`` rounds of ~SECONDS/3 each."""
    for raw in frames[:200]:  # warm caches (keys, imports)
        handle(raw)
    best = 0.0
    for _ in range(rounds):
        done = 0
        start = time.process_time()
        while time.process_time() - start < SECONDS / 3:
            for raw in frames:
                handle(raw)
            done += len(frames)
        best = max(best, done / (time.process_time() - start))
    return best


def main() -> None:
    traffic = list(mixed_traffic(repos=200, frames=FRAMES, plyr_every=200))
    frames = [raw for _, _, raw in traffic]
    keys = {did: key.did_key for did, key, _ in traffic}
    plyr = sum(b"fm.plyr." in raw for raw in frames)
    mean = sum(map(len, frames)) / len(frames)
    print(f"# {len(frames)} frames, {plyr} fm.plyr commits, mean frame {mean:.0f} bytes")

    ours = our_path(keys)
    assert sum(ours(raw) > 0 for raw in frames) == len(frames)
    sdk = sdk_path()
    sdk_fps = measure(sdk, frames)
    our_fps = measure(ours, frames)
    # Where our time goes: the skipped majority vs the few verified fm.plyr commits.
    skipped = measure(ours, [raw for raw in frames if b"fm.plyr." not in raw], rounds=1)
    plyr_frames = [raw for raw in frames if b"fm.plyr." in raw] * 20
    matching = measure(ours, plyr_frames, rounds=1)
    unproven = measure(our_path(keys, prove=False), plyr_frames, rounds=1)
    print(
        f"# ours: {1e6 / skipped:.2f} us per skipped frame, {1e6 / matching:.1f} us per"
        " matching fm.plyr frame (decode, CAR, signature, MST proof, envelopes),"
        f" {1e6 / unproven:.1f} us without the MST proof"
    )
    print(f"BENCH ingest.decode_fps {our_fps:.0f} frames/s")
    print(f"BENCH ingest.sdk_decode_fps {sdk_fps:.0f} frames/s")
    print(f"BENCH ingest.decode_ratio_vs_sdk {our_fps / sdk_fps:.1f} x")


if __name__ == "__main__":
    main()
