"""The error that refuses one piece of input and names why.

Verification (:class:`~ingest.verify.VerifyError`) and label checks
(:class:`~ingest.labels.LabelError`) refuse a commit, a ``#sync`` or a label with a short
``reason`` (``bad_signature``, ``mst_proof_missing``, ``expired``, ...): the consumer counts
the refusal under that reason, samples the message, and goes on.
"""

from __future__ import annotations

__all__ = ["Rejected"]


class Rejected(ValueError):
    """Input we refuse; ``reason`` is its metric label, the message adds the detail."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
