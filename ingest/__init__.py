"""Ingest: turn network sources (firehose, backfill) into envelopes on the log.

Errors: :class:`~ingest.frames.FrameError` for a frame we cannot decode and
:class:`~ingest.car.CarError` for a CAR we cannot read; both are counted and skipped,
never fatal to the consumer. A commit, ``#sync`` or label that decodes but fails its
checks raises a :class:`~ingest.errors.Rejected` with the reason it is counted under.
"""
