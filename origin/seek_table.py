"""Seek tables: playing time -> byte offset of an Ogg page a player can start decoding from.

A player fetches bytes ``[0, header_bytes)`` once for the codec headers, then continues from
any point's offset; decoding resumes at about that point's time. Points are Ogg page starts,
at most ``MAX_GAP_S`` apart, so there is at least one per second of audio.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from origin.manifest_schema import ManifestError
from origin.ogg import NO_GRANULE, OggAudio

MAX_GAP_S = 1.0
MAX_TIME_S = 86_400  # a day: the schema's bound on a track's duration


@dataclass(frozen=True, slots=True, eq=False)
class SeekTable:
    header_bytes: int
    # Two flat arrays rather than a tuple of pairs: an edge keeps many manifests in memory.
    times_ms: array[int]
    offsets: array[int]

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, SeekTable)
            and self.header_bytes == other.header_bytes
            and self.times_ms == other.times_ms
            and self.offsets == other.offsets
        )

    __hash__ = None  # type: ignore[assignment]

    def points(self) -> Iterator[tuple[float, int]]:
        """``(time_s, byte_offset)`` pairs in playing order."""
        for time_ms, offset in zip(self.times_ms, self.offsets, strict=True):
            yield time_ms / 1000, offset

    def __len__(self) -> int:
        return len(self.offsets)

    @property
    def nbytes(self) -> int:
        return self.times_ms.itemsize * len(self.times_ms) + self.offsets.itemsize * len(
            self.offsets
        )

    def to_doc(self) -> dict[str, Any]:
        return {
            "header_bytes": self.header_bytes,
            "points": [[time_s, offset] for time_s, offset in self.points()],
        }

    @classmethod
    def from_points(cls, header_bytes: int, points: list[tuple[float, int]]) -> SeekTable:
        times = array("Q", (round(time_s * 1000) for time_s, _ in points))
        return cls(header_bytes, times, array("Q", (offset for _, offset in points)))

    @classmethod
    def from_doc(cls, doc: dict[str, Any], object_size: int) -> SeekTable:
        """From a ``seek_table`` object whose points the schema check left out (see
        ``manifest_schema.check``): every point is checked here, and must fit the object."""
        header_bytes = doc["header_bytes"]
        if type(header_bytes) is not int or not 0 <= header_bytes <= object_size:
            raise ManifestError("seek_table.header_bytes: not a byte count within the object")
        times, offsets = array("Q"), array("Q")
        previous_time, previous_offset = -1, header_bytes - 1
        for index, point in enumerate(doc["points"]):
            if not _is_point(point):
                raise ManifestError(
                    f"seek_table.points.{index}: expected [seconds, byte offset], got {point!r}"
                )
            time_ms, offset = round(point[0] * 1000), point[1]
            if offset <= previous_offset or offset >= object_size or time_ms < previous_time:
                raise ManifestError(
                    f"seek_table.points.{index}: offsets must rise within the object "
                    "and times must not fall"
                )
            times.append(time_ms)
            offsets.append(offset)
            previous_time, previous_offset = time_ms, offset
        return cls(header_bytes, times, offsets)


def _is_point(point: object) -> bool:
    return (
        isinstance(point, list)
        and len(point) == 2
        and type(point[0]) in (int, float)
        and 0 <= point[0] <= MAX_TIME_S  # NaN fails here too
        and type(point[1]) is int
    )


def build_seek_table(audio: OggAudio, max_gap_s: float = MAX_GAP_S) -> SeekTable:
    """Pick audio page starts so that consecutive points are at most ``max_gap_s`` apart."""
    max_gap_ms = round(max_gap_s * 1000)
    candidates: list[tuple[int, int]] = []  # (time in whole ms, rounded down; page offset)
    granule = audio.pre_skip  # decoding from the first audio page starts at time zero
    for page in audio.audio_pages:
        # Audio decoded from this page starts where the last finished packet before it ended.
        candidates.append((audio.milliseconds(granule), page.offset))
        if page.granule != NO_GRANULE:
            granule = page.granule
    kept: list[tuple[int, int]] = []
    for index, candidate in enumerate(candidates):
        following = candidates[index + 1] if index + 1 < len(candidates) else None
        if not kept or following is None or following[0] - kept[-1][0] > max_gap_ms:
            kept.append(candidate)
    return SeekTable(
        audio.header_bytes,
        array("Q", (time_ms for time_ms, _ in kept)),
        array("Q", (offset for _, offset in kept)),
    )
