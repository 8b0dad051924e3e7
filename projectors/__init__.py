"""Projectors: build read models in PostgreSQL from the log, exactly once.

Each read model is one module with the same small surface (``to_row``, ``insert_*``,
``delete_*``, ``delete_by_did``); :mod:`projectors.runner` owns offsets and transactions.
Errors: :class:`~projectors.base.InvalidEvent` (bad data: dead-letter and advance) and
:class:`~projectors.base.OffsetConflict` (another worker moved the offset: roll back).
"""
