"""RepoLanes: order within a repo, concurrency across repos, the resume point, the bound."""

from __future__ import annotations

import asyncio

import pytest

from ingest.lanes import RepoLanes, Work


class Script:
    """Work items that record when they ran and wait for the test where told to."""

    def __init__(self) -> None:
        self.ran: list[str] = []
        self.gates: dict[str, asyncio.Event] = {}
        self.passed: list[int] = []
        self.saves = 0

    def work(self, name: str, *, gate: bool = False, publishes: bool = False) -> Work:
        if gate:
            self.gates[name] = asyncio.Event()

        async def run() -> bool:
            if name in self.gates:
                await self.gates[name].wait()
            self.ran.append(name)
            return publishes

        return run

    def lanes(self, limit: int = 16) -> RepoLanes:
        async def save() -> None:
            self.saves += 1

        return RepoLanes(self.passed.append, limit=limit, after_publish=save)


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def test_a_held_repo_holds_only_itself_and_the_resume_point() -> None:
    s = Script()
    lanes = s.lanes()
    await lanes.submit("slow", 1, s.work("slow-1", gate=True))
    await lanes.submit("fast", 2, s.work("fast-2", publishes=True))
    await lanes.submit("slow", 3, s.work("slow-3"))
    lanes.passed(4)  # a skipped frame
    await lanes.submit("fast", 5, s.work("fast-5"))
    lanes.passed(6)
    lanes.passed(7)
    await settle()
    assert s.ran == ["fast-2", "fast-5"]
    assert s.passed == []  # nothing passes the unfinished event at 1
    assert lanes.busy("slow") and not lanes.busy("fast")
    assert lanes.unfinished == 2

    s.gates["slow-1"].set()
    await lanes.drain()
    assert s.ran == ["fast-2", "fast-5", "slow-1", "slow-3"]
    assert s.passed[-1] == 7 and s.passed == sorted(s.passed)
    assert s.saves == 1  # the passed events included one that published
    lanes.passed(8)  # nothing unfinished: passes at once
    assert s.passed[-1] == 8 and not lanes.busy("slow")


async def test_the_resume_point_follows_arrival_order_when_seqs_go_back() -> None:
    s = Script()
    lanes = s.lanes()
    await lanes.submit("a", 900, s.work("a", gate=True))
    lanes.passed(901)
    await lanes.submit("b", 5, s.work("b"))  # the relay was reset: seqs start again
    await settle()
    assert s.passed == []
    s.gates["a"].set()
    await lanes.drain()
    assert s.passed == [5]


async def test_submit_waits_for_room() -> None:
    s = Script()
    lanes = s.lanes(limit=2)
    await lanes.submit("a", 1, s.work("a1", gate=True))
    await lanes.submit("a", 2, s.work("a2"))
    third = asyncio.create_task(lanes.submit("b", 3, s.work("b3")))
    await settle()
    assert not third.done() and s.ran == []
    s.gates["a1"].set()
    await asyncio.wait_for(third, 5)
    await lanes.drain()
    assert s.ran == ["a1", "a2", "b3"] and s.passed[-1] == 3


async def test_failed_work_stops_the_lanes_and_the_resume_point() -> None:
    s = Script()
    lanes = s.lanes()

    async def boom() -> bool:
        raise ValueError("boom")

    await lanes.submit("a", 1, s.work("a1", gate=True))
    await lanes.submit("b", 2, boom)
    await lanes.submit("b", 3, s.work("b3"))
    await settle()
    assert lanes.failed.is_set()
    with pytest.raises(ValueError):
        await lanes.submit("c", 4, s.work("c4"))
    s.gates["a1"].set()  # work already running finishes; nothing starts after a failure
    await lanes.close()  # already raised: not again
    assert s.ran == ["a1"]  # b3 never ran after b2 failed
    assert s.passed == [1]
    await lanes.submit("d", 5, s.work("d5"))  # closed lanes are ready for a new session
    await lanes.drain()
    assert s.passed[-1] == 5


async def test_close_waits_for_work_in_progress_unless_cancelled() -> None:
    s = Script()
    lanes = s.lanes()
    await lanes.submit("a", 1, s.work("a1", gate=True))
    await lanes.submit("b", 2, s.work("b2"))
    closing = asyncio.create_task(lanes.close())
    await settle()
    assert not closing.done() and s.ran == ["b2"]
    s.gates["a1"].set()
    await asyncio.wait_for(closing, 5)
    assert s.ran == ["b2", "a1"] and s.passed[-1] == 2

    await lanes.submit("a", 3, s.work("a3", gate=True))
    await lanes.submit("b", 4, s.work("b4"))
    await settle()
    await lanes.close(cancel=True)
    assert s.ran[-1] == "b4" and s.passed[-1] == 2  # 3 never finished: the point stays


async def test_close_raises_a_failure_not_raised_yet() -> None:
    s = Script()
    lanes = s.lanes()

    async def boom() -> bool:
        raise ValueError("late")

    await lanes.submit("a", 1, boom)
    await settle()
    with pytest.raises(ValueError):
        await lanes.close()
