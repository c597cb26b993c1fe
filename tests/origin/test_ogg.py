"""The Ogg indexer, on real ffmpeg output and on damaged files."""

from __future__ import annotations

import itertools

import pytest

from origin.ogg import NO_GRANULE, OggError, analyse, read_pages
from origin.publish import RenditionFile
from tests.origin.conftest import SOURCE_SECONDS


@pytest.mark.parametrize(
    ("name", "codec", "rate"),
    [("96", "vorbis", 44_100), ("320", "vorbis", 44_100), ("64", "opus", 48_000)],
)
def test_reads_codec_parameters_and_duration(
    encoded: dict[str, RenditionFile], name: str, codec: str, rate: int
) -> None:
    audio = analyse(encoded[name].path.read_bytes())
    assert (audio.codec, audio.sample_rate, audio.channels) == (codec, rate, 2)
    assert audio.duration_s == pytest.approx(SOURCE_SECONDS, abs=0.01)
    assert audio.header_bytes == audio.audio_pages[0].offset
    if codec == "opus":
        assert audio.pre_skip > 0  # the encoder's look-ahead, which time must discount


def test_pages_tile_the_file(encoded: dict[str, RenditionFile]) -> None:
    data = encoded["160"].path.read_bytes()
    pages = read_pages(data)
    assert pages[0].offset == 0
    for before, after in itertools.pairwise(pages):
        assert before.offset + before.size == after.offset
    assert pages[-1].offset + pages[-1].size == len(data)
    granules = [p.granule for p in pages if p.granule != NO_GRANULE]
    assert granules == sorted(granules)


def test_rejects_damaged_files(encoded: dict[str, RenditionFile]) -> None:
    data = encoded["96"].path.read_bytes()
    with pytest.raises(OggError, match="truncated page"):
        analyse(data[:-100])
    with pytest.raises(OggError, match="no Ogg page at byte 0"):
        analyse(b"RIFF" + data[4:])
    with pytest.raises(OggError, match="more than one logical stream"):
        analyse(data + encoded["160"].path.read_bytes())
    with pytest.raises(OggError, match="no Ogg page"):
        analyse(data + b"trailing garbage, not a page")
    with pytest.raises(OggError, match="empty file"):
        analyse(b"")
    header_end = analyse(data).header_bytes
    with pytest.raises(OggError, match="ends inside the vorbis headers"):
        analyse(data[: read_pages(data)[1].offset])
    assert header_end > 0
