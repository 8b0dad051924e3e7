"""Ingest: turn network sources (firehose, backfill) into envelopes on the log.

Errors: :class:`~ingest.frames.FrameError` for a frame we cannot decode and
:class:`~ingest.car.CarError` for a CAR we cannot read; both are counted and skipped,
never fatal to the consumer.
"""
