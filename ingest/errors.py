"""The exceptions raised by the ``ingest`` package (the tree is in the package docstring).

Each is defined here and re-exported by the module that raises it (``ingest.car.CarError``
is this ``CarError``), so ``except IngestError`` catches every one of them.
"""

from __future__ import annotations

__all__ = [
    "BackfillError",
    "CarError",
    "FrameError",
    "IngestError",
    "JetstreamError",
    "LabelError",
    "MstNodeMissing",
    "RecordError",
    "Rejected",
    "RepoError",
    "SourceError",
    "Undecodable",
    "VerifyError",
]


class IngestError(Exception):
    """Base class of every error this package raises."""


class Undecodable(IngestError, ValueError):
    """Input we cannot decode; the consumer counts it and skips it."""


class FrameError(Undecodable):
    """A firehose frame we cannot decode."""


class CarError(Undecodable):
    """A CAR we cannot read (truncated, oversized, a block that does not match its CID)."""


class RepoError(Undecodable):
    """A repository CAR we cannot read: bad CAR, commit, MST node or record."""


class MstNodeMissing(RepoError):
    """An MST node that a walk or lookup needs is not among the blocks."""


class RecordError(Undecodable):
    """A commit whose records cannot be read (bad CAR, missing or undecodable block)."""


class JetstreamError(Undecodable):
    """A Jetstream message we cannot use (not JSON, wrong shape, unknown kind)."""


class Rejected(IngestError, ValueError):
    """Input that decodes but that we refuse; ``reason`` is its metric label.

    The consumer counts the refusal under ``reason`` (``bad_signature``,
    ``mst_proof_missing``, ``expired``...), samples the message to the log, and goes on.
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


class VerifyError(Rejected):
    """A commit or ``#sync`` we refuse (signature, commit block, MST proof, DID)."""


class LabelError(Rejected):
    """A label frame or label we refuse (undecodable, wrong source, bad signature)."""


class SourceError(IngestError):
    """The source sent an error frame (e.g. ``ConsumerTooSlow``): reconnect."""


class BackfillError(IngestError):
    """One repo could not be synced; ``retry`` says whether another attempt may help."""

    def __init__(self, message: str, *, retry: bool = True, reason: str = "error") -> None:
        super().__init__(message)
        self.retry = retry
        self.reason = reason
