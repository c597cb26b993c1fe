"""The Ogg indexer, on real ffmpeg output and on damaged files."""

from __future__ import annotations

import itertools

import pytest

from origin.ogg import NO_GRANULE, OggError, analyse, page_crc, read_pages
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


def test_headers_are_whole_pages_before_the_first_audio_granule(
    encoded: dict[str, RenditionFile],
) -> None:
    for name, header_pages in (("96", 2), ("64", 2)):
        data = encoded[name].path.read_bytes()
        audio = analyse(data)
        pages = read_pages(data)
        assert data[audio.header_bytes : audio.header_bytes + 4] == b"OggS"
        assert [p.offset for p in pages[:header_pages]] == [0, pages[1].offset]
        assert audio.header_bytes == pages[header_pages].offset
        assert all(p.granule == 0 for p in pages[:header_pages])
        assert audio.audio_pages[0].granule > 0


def test_rejects_damaged_files(encoded: dict[str, RenditionFile]) -> None:
    data = encoded["96"].path.read_bytes()
    pages = read_pages(data)
    middle = pages[len(pages) // 2]
    with pytest.raises(OggError, match="truncated page"):
        analyse(data[:-100])
    with pytest.raises(OggError, match="no Ogg page at byte 0"):
        analyse(b"RIFF" + data[4:])
    with pytest.raises(OggError, match="more than one logical stream"):
        analyse(data + encoded["160"].path.read_bytes())
    with pytest.raises(OggError, match="data after the end of the stream"):
        analyse(data + b"trailing garbage, not a page")
    with pytest.raises(OggError, match="empty file"):
        analyse(b"")
    flipped = bytearray(data)
    flipped[middle.offset + middle.size - 10] ^= 0x01
    with pytest.raises(OggError, match=f"page at byte {middle.offset} fails its checksum"):
        analyse(bytes(flipped))
    without_a_page = data[: middle.offset] + data[middle.offset + middle.size :]
    with pytest.raises(OggError, match="out of sequence"):
        analyse(without_a_page)
    with pytest.raises(OggError, match="the stream has no end"):
        analyse(data[: pages[-1].offset])


def test_page_crc_is_oggs_crc32() -> None:
    """Against a bit-by-bit implementation of the polynomial, on a few inputs."""

    def reference(data: bytes) -> int:
        crc = 0
        for byte in data:
            crc ^= byte << 24
            for _ in range(8):
                crc = ((crc << 1) ^ 0x04C11DB7 if crc & 0x80000000 else crc << 1) & 0xFFFFFFFF
        return crc

    for sample in (b"", b"OggS", bytes(range(256)) * 3):
        assert page_crc(sample) == reference(sample)
