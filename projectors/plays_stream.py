"""Kafka mode: play qualification as a faust-streaming agent.

The agent reads ``play.reported`` events from the ``plays`` topic, decides each with the
same pure function the embedded projector uses (:func:`projectors.plays_qualify.qualify`),
keeps the state (the counted windows of each listener and track) in a faust table whose
changelog is partitioned like the topic, and appends a ``play.counted`` event for each
report that counts to the same topic, in the report's partition (the listener's, by the
log's own partitioner). The PostgreSQL side is :class:`projectors.plays.PlaysProjector`
with ``qualify_reports=False``: it stores ``play.counted`` keyed by play id.

faust is at-least-once: after a crash a report may be decided again. With the table
restored from its changelog the report is then a ``duplicate``; without its last write it
is counted again under the same play id, which the projector stores once. So the read
model sees each play exactly once either way.

Bad events (not an envelope, an invalid report) are logged and skipped: faust would
acknowledge them anyway, and the embedded projector dead-letters the same events.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import datetime
from typing import Any

import faust

from kernel.config import Settings, load_settings
from kernel.envelope import Envelope, EnvelopeError
from kernel.log.base import partition_for
from kernel.plays import play_counted
from projectors.base import InvalidEvent
from projectors.plays import play_report
from projectors.plays_qualify import Window, qualify

__all__ = ["create_stream_app", "decide", "decode_state", "encode_state", "main"]

logger = logging.getLogger(__name__)

APP_ID = "plyr-plays"


def encode_state(state: tuple[Window, ...]) -> bytes:
    """The table value of a state: JSON ``[[start, end, play_id], ...]``."""
    return json.dumps([[w.start.isoformat(), w.end.isoformat(), w.play_id] for w in state]).encode()


def decode_state(value: bytes | None) -> tuple[Window, ...]:
    """The state a table value holds (``()`` for none)."""
    if not value:
        return ()
    return tuple(
        Window(datetime.fromisoformat(start), datetime.fromisoformat(end), play_id)
        for start, end, play_id in json.loads(value)
    )


def state_key(listener: str, track_uri: str) -> str:
    """The table key of one listener and track."""
    return f"{listener} {track_uri}"


def decide(
    state: tuple[Window, ...], envelope: Envelope
) -> tuple[tuple[Window, ...], Envelope | None]:
    """Pure: the new state and the ``play.counted`` event (or None) for a report."""
    report = play_report(envelope)
    new_state, play, _ = qualify(state, report)
    if play is None:
        return new_state, None
    return new_state, play_counted(envelope, window_end=play.window_end, self_play=play.self_play)


def create_stream_app(settings: Settings, *, app_id: str = APP_ID) -> faust.App:
    """The faust app with the qualifying agent, for the configured broker and topics."""
    app = faust.App(
        app_id,
        broker=f"kafka://{settings.kafka_bootstrap}",
        store="memory://",
        datadir=str(settings.data_dir / "faust"),
        key_serializer="raw",
        value_serializer="raw",
        topic_partitions=settings.partitions,
        broker_session_timeout=10,
        broker_rebalance_timeout=10,
        web_enabled=False,
    )
    partitions = settings.partitions
    topic = app.topic(
        settings.topic("plays"), key_type=bytes, value_type=bytes, partitions=partitions
    )
    table = app.Table(
        "play_windows", default=bytes, partitions=partitions, key_type=str, value_type=bytes
    )

    async def qualify_plays(stream: Any) -> None:
        async for event in stream.events():
            try:
                envelope = Envelope.from_bytes(event.value)
                if envelope.kind != "play.reported":
                    continue
                report = play_report(envelope)
            except (EnvelopeError, InvalidEvent) as exc:
                logger.warning(
                    "bad play event skipped",
                    extra={
                        "partition": event.message.partition,
                        "offset": event.message.offset,
                        "reason": str(exc),
                    },
                )
                continue
            key = state_key(report.listener, report.track_uri)
            state, counted = decide(decode_state(table[key]), envelope)
            table[key] = encode_state(state)
            if counted is not None:
                await topic.send(
                    key=counted.key,
                    value=counted.to_bytes(),
                    partition=partition_for(counted.key, partitions),
                )

    app.agent(topic, name="qualify_plays")(qualify_plays)
    return app


def main() -> None:
    """Run one stream worker from the environment's settings (stopped by SIGTERM)."""
    from faust.worker import Worker

    settings = load_settings()
    app = create_stream_app(settings, app_id=os.environ.get("PLYR_PLAYS_APP_ID", APP_ID))
    Worker(app, loglevel="WARNING").execute_from_commandline()


if __name__ == "__main__":
    main()
