"""Which offsets each Parquet segment holds: the archive's only truth.

The manifest is one JSON document (``manifest.json`` at the root of the store). A segment
is named after its topic, partition and first offset, so writing the same segment again
lands on the same name; :meth:`Manifest.with_segment` replaces an entry of that name.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass

import orjson

__all__ = ["MANIFEST_NAME", "Manifest", "ManifestError", "Segment", "segment_name"]

MANIFEST_NAME = "manifest.json"
_VERSION = 1


class ManifestError(ValueError):
    """The stored manifest is not a manifest this code can read."""


def segment_name(topic: str, partition: int, first_offset: int) -> str:
    """The store name of a segment: deterministic, and sorting by name sorts by offset."""
    return f"{topic}/{partition:05d}/{first_offset:020d}.parquet"


@dataclass(frozen=True, slots=True)
class Segment:
    """One Parquet file: the messages of ``topic``/``partition`` from ``first_offset`` to
    ``last_offset`` (``count`` of them; fewer than the span only if the log had gaps)."""

    topic: str
    partition: int
    first_offset: int
    last_offset: int
    count: int
    bytes: int

    @property
    def name(self) -> str:
        return segment_name(self.topic, self.partition, self.first_offset)

    @property
    def dense(self) -> bool:
        """Whether the segment holds every offset of its span."""
        return self.count == self.last_offset - self.first_offset + 1


@dataclass(frozen=True, slots=True)
class Manifest:
    """Every archived segment, sorted by topic, partition and first offset."""

    segments: tuple[Segment, ...] = ()

    def of(self, topic: str, partition: int) -> list[Segment]:
        """The segments of one topic-partition, in offset order."""
        return [s for s in self.segments if s.topic == topic and s.partition == partition]

    def of_topic(self, topic: str) -> list[Segment]:
        """The segments of one topic, by partition then offset."""
        return [s for s in self.segments if s.topic == topic]

    def topics(self) -> list[str]:
        """Topics with at least one segment."""
        return sorted({s.topic for s in self.segments})

    def end_offset(self, topic: str, partition: int) -> int:
        """The offset after the last archived one (0 when nothing is archived)."""
        return max((s.last_offset + 1 for s in self.of(topic, partition)), default=0)

    def with_segment(self, segment: Segment) -> Manifest:
        """This manifest with ``segment`` added (replacing an entry of the same name)."""
        kept = [s for s in self.segments if s.name != segment.name]
        return Manifest(_sorted([*kept, segment]))

    def to_bytes(self) -> bytes:
        return orjson.dumps(
            {"version": _VERSION, "segments": [asdict(s) for s in self.segments]},
            option=orjson.OPT_INDENT_2,
        )

    @classmethod
    def from_bytes(cls, raw: bytes | None) -> Manifest:
        """Parse a stored manifest; ``None`` (nothing stored yet) is the empty one."""
        if raw is None:
            return cls()
        try:
            data = orjson.loads(raw)
            if data.get("version") != _VERSION:
                raise ManifestError(f"unsupported manifest version {data.get('version')!r}")
            segments = [
                Segment(
                    topic=str(s["topic"]),
                    partition=int(s["partition"]),
                    first_offset=int(s["first_offset"]),
                    last_offset=int(s["last_offset"]),
                    count=int(s["count"]),
                    bytes=int(s["bytes"]),
                )
                for s in data["segments"]
            ]
        except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, ManifestError):
                raise
            raise ManifestError(f"unreadable archive manifest: {exc}") from None
        return cls(_sorted(segments))


def _sorted(segments: Iterable[Segment]) -> tuple[Segment, ...]:
    return tuple(sorted(segments, key=lambda s: (s.topic, s.partition, s.first_offset)))
