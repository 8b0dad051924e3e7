"""CursorKeeper: noted per event, written when asked or once per interval, state first."""

from __future__ import annotations

import pytest
from psycopg_pool import AsyncConnectionPool

from ingest.cursor import CursorKeeper, load_cursor

SOURCE = "test:cursor"


async def test_written_only_when_asked_or_due_and_resumed_by_a_new_keeper(
    pool: AsyncConnectionPool,
) -> None:
    keeper = CursorKeeper(pool, SOURCE, interval=3600.0)
    assert await keeper.load() is None
    await keeper.advance(5)
    await keeper.advance(7)
    # Within the interval nothing is written (a throttle, not a write per event)...
    assert await load_cursor(pool, SOURCE) is None
    assert (keeper.position, keeper.saved) == (7, None)
    # ...unless asked (a source that just published), and then the last noted position.
    await keeper.advance(8, save=True)
    assert await load_cursor(pool, SOURCE) == 8
    await keeper.advance(9)
    await keeper.save()
    assert keeper.saved == 9

    again = CursorKeeper(pool, SOURCE, interval=3600.0)
    assert await again.load() == 9
    assert again.position == again.saved == 9


async def test_the_interval_passing_writes_on_the_next_event(pool: AsyncConnectionPool) -> None:
    keeper = CursorKeeper(pool, SOURCE, interval=0.0)
    await keeper.load()
    await keeper.advance(3)
    assert await load_cursor(pool, SOURCE) == 3
    slow = CursorKeeper(pool, SOURCE, interval=3600.0)
    await slow.load()
    assert not slow.due()
    slow.saved_at -= 3600.0
    assert slow.due()
    await slow.advance(4)
    assert await load_cursor(pool, SOURCE) == 4


async def test_forward_only_ignores_replayed_positions(pool: AsyncConnectionPool) -> None:
    keeper = CursorKeeper(pool, SOURCE, interval=3600.0)
    await keeper.load()
    keeper.note(10)
    keeper.note(4)  # a rewound stream replays older events
    assert keeper.position == 10
    follower = CursorKeeper(pool, SOURCE, interval=3600.0, forward_only=False)
    follower.note(10)
    follower.note(4)  # a relay that reset its sequence
    assert follower.position == 4


async def test_state_is_saved_before_the_cursor_passes_it(pool: AsyncConnectionPool) -> None:
    seen: list[int | None] = []

    async def before() -> None:
        seen.append(await load_cursor(pool, SOURCE))

    keeper = CursorKeeper(pool, SOURCE, interval=3600.0, before_save=before)
    await keeper.load()
    await keeper.advance(1, save=True)
    await keeper.advance(2, save=True)
    # The hook ran before each write, so it saw the previous cursor, never the new one.
    assert seen == [None, 1]
    assert await load_cursor(pool, SOURCE) == 2

    async def failing() -> None:
        raise OSError("state not saved")

    broken = CursorKeeper(pool, SOURCE, interval=3600.0, before_save=failing)
    await broken.load()
    with pytest.raises(OSError):
        await broken.advance(3, save=True)
    assert await load_cursor(pool, SOURCE) == 2  # the cursor did not pass unsaved state
