"""Projectors: build read models in PostgreSQL from the log, exactly once.

:mod:`projectors.registry` lists the projectors (catalog, search, moderation) with their
topics and factories; :mod:`projectors.runner` owns offsets and transactions. The catalog's
record collections are plugins with one surface (:class:`~projectors.records.RecordModule`:
``to_row``, ``touches``, ``insert``, ``delete``, ``delete_by_did``), iterated in the order of
:data:`projectors.catalog.RECORD_MODULES`; the rev/tombstone rule is
:class:`~projectors.records.RecordTable`, shared by the catalog, search and moderation.
Errors: :class:`~projectors.base.InvalidEvent` (bad data: dead-letter and advance) and
:class:`~projectors.base.OffsetConflict` (another worker moved the offset: roll back).
"""
