"""Seek tables built from real renditions: dense enough, in order, and decodable from any point.

The decoding proof is what a player does: fetch the header bytes, jump to a point's offset and
decode from there. ffmpeg must decode it without a single error, and the audio it yields must
run from about the point's time to the end.
"""

from __future__ import annotations

import itertools

import pytest

from origin.publish import RenditionFile
from origin.seek_table import MAX_GAP_S
from tests.support.audio import decode

RENDITIONS = ["96", "160", "320", "64"]


@pytest.mark.parametrize("name", RENDITIONS)
def test_points_are_monotonic_and_cover_the_duration(
    encoded: dict[str, RenditionFile], name: str
) -> None:
    file = encoded[name]
    table = file.seek_table
    points = list(table.points())
    times = [time_s for time_s, _ in points]
    offsets = [offset for _, offset in points]
    assert offsets == sorted(set(offsets))
    assert times == sorted(times)
    assert points[0] == (0.0, table.header_bytes)
    data = file.path.read_bytes()
    assert all(data[offset : offset + 4] == b"OggS" for offset in offsets)  # page starts
    assert max(b - a for a, b in itertools.pairwise(times)) <= MAX_GAP_S + 1e-9
    assert times[-1] >= file.duration_s - MAX_GAP_S
    assert len(points) >= file.duration_s  # at least one point per second of audio


@pytest.mark.parametrize("name", RENDITIONS)
def test_decoding_from_three_seek_points_is_clean(
    encoded: dict[str, RenditionFile], name: str
) -> None:
    file = encoded[name]
    data = file.path.read_bytes()
    points = list(file.seek_table.points())
    header = data[: file.seek_table.header_bytes]
    for time_s, offset in (points[len(points) // 4], points[len(points) // 2], points[-3]):
        seconds, errors = decode(header + data[offset:])
        assert errors == "", f"decoding from {time_s} s (byte {offset}): {errors}"
        assert seconds == pytest.approx(file.duration_s - time_s, abs=0.15)
