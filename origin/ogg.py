"""Just enough of the Ogg container (RFC 3533) to index a single-stream Vorbis or Opus file.

Ingest runs this over every rendition ffmpeg writes: it checks the file is one well-formed
logical stream (page checksums, sequence numbers, end-of-stream flag), reads the codec's
identification header, finds where the headers end and where each audio page starts, and
turns granule positions into playing time.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

CAPTURE = b"OggS"
_PAGE_HEADER = struct.Struct("<4sBBqIIIB")  # capture, version, type, granule, serial, seq, crc, n
_CONTINUED, _FIRST, _LAST = 0x01, 0x02, 0x04
NO_GRANULE = -1  # a page on which no packet ends
OPUS_GRANULE_RATE = 48_000  # RFC 7845: Opus granules always count 48 kHz samples


class OggError(ValueError):
    """The file is not a single well-formed Vorbis or Opus Ogg stream."""


_REVERSED_BITS = bytes(int(f"{n:08b}"[::-1], 2) for n in range(256))


def page_crc(page: bytes) -> int:
    """Ogg's CRC-32 (polynomial 0x04C11DB7, not reflected, initial value 0) of ``page``.

    zlib's CRC-32 uses the same polynomial reflected, starting from all ones. Reflecting every
    input byte, cancelling zlib's start value with the CRC of as many zero bytes, and
    reflecting the result gives Ogg's value at C speed.
    """
    reflected = zlib.crc32(page.translate(_REVERSED_BITS)) ^ zlib.crc32(bytes(len(page)))
    return int(f"{reflected:032b}"[::-1], 2)


@dataclass(frozen=True, slots=True)
class Page:
    offset: int
    size: int
    granule: int
    continued: bool  # the first packet on this page began on an earlier page
    packets_ended: int  # packets that end on this page
    ends_on_packet_boundary: bool
    ends_stream: bool  # the end-of-stream page


@dataclass(frozen=True, slots=True)
class OggAudio:
    codec: str  # "vorbis" or "opus"
    granule_rate: int  # granule positions per second
    sample_rate: int  # the rate a decoder outputs
    channels: int
    pre_skip: int  # granules to drop at the start (Opus)
    header_bytes: int  # bytes [0, header_bytes) hold the codec headers, whole pages
    audio_pages: tuple[Page, ...]

    def seconds(self, granule: int) -> float:
        return max(granule - self.pre_skip, 0) / self.granule_rate

    def milliseconds(self, granule: int) -> int:
        """Playing time at ``granule``, in whole milliseconds rounded down."""
        return max(granule - self.pre_skip, 0) * 1000 // self.granule_rate

    @property
    def duration_s(self) -> float:
        last = next(
            (p.granule for p in reversed(self.audio_pages) if p.granule != NO_GRANULE), None
        )
        return 0.0 if last is None else self.seconds(last)


def _check_integrity(view: memoryview, offset: int, size: int, crc: int, in_sequence: bool) -> None:
    if not in_sequence:
        raise OggError(f"page at byte {offset} is out of sequence (a page is missing)")
    page = bytearray(view[offset : offset + size])
    page[22:26] = bytes(4)  # the checksum covers the page with its own field zeroed
    if page_crc(bytes(page)) != crc:
        raise OggError(f"page at byte {offset} fails its checksum")


def read_pages(data: bytes | memoryview) -> list[Page]:
    """Every page of a single logical stream, in order; OggError on anything malformed."""
    view = memoryview(data)
    pages: list[Page] = []
    serial_seen: int | None = None
    offset = 0
    while offset < len(view):
        if len(view) - offset < _PAGE_HEADER.size:
            raise OggError(f"truncated page header at byte {offset}")
        capture, version, kind, granule, serial, sequence, crc, count = _PAGE_HEADER.unpack_from(
            view, offset
        )
        if capture != CAPTURE or version != 0:
            raise OggError(f"no Ogg page at byte {offset}")
        if serial_seen is None:
            if not kind & _FIRST:
                raise OggError("the first page does not begin a stream")
            serial_seen = serial
        elif serial != serial_seen or kind & _FIRST:
            raise OggError("more than one logical stream (chained or multiplexed Ogg)")
        lacing_start = offset + _PAGE_HEADER.size
        lacing = bytes(view[lacing_start : lacing_start + count])
        size = _PAGE_HEADER.size + count + sum(lacing)
        if len(lacing) < count or offset + size > len(view):
            raise OggError(f"truncated page at byte {offset}")
        _check_integrity(view, offset, size, crc, sequence == len(pages))
        pages.append(
            Page(
                offset=offset,
                size=size,
                granule=granule,
                continued=bool(kind & _CONTINUED),
                packets_ended=sum(1 for value in lacing if value < 255),
                ends_on_packet_boundary=not lacing or lacing[-1] < 255,
                ends_stream=bool(kind & _LAST),
            )
        )
        offset += size
        if kind & _LAST and offset != len(view):
            if bytes(view[offset : offset + 4]) == CAPTURE:
                raise OggError("more than one logical stream (chained or multiplexed Ogg)")
            raise OggError(f"data after the end of the stream at byte {offset}")
    if not pages:
        raise OggError("empty file")
    return pages


def analyse(data: bytes | memoryview) -> OggAudio:
    """Index a Vorbis or Opus Ogg file: codec parameters, header size and audio pages."""
    view = memoryview(data)
    pages = read_pages(view)
    first = pages[0]
    payload_start = first.offset + _PAGE_HEADER.size + view[first.offset + 26]
    identification = bytes(view[payload_start : first.offset + first.size])
    if identification.startswith(b"\x01vorbis") and len(identification) >= 30:
        if identification[7:11] != bytes(4) or not identification[29] & 1:
            raise OggError("unsupported Vorbis version or a bad identification header")
        codec, header_packets = "vorbis", 3
        channels = identification[11]
        sample_rate = struct.unpack_from("<I", identification, 12)[0]
        granule_rate, pre_skip = sample_rate, 0
    elif identification.startswith(b"OpusHead") and len(identification) >= 19:
        if identification[8] >> 4:
            raise OggError(f"unsupported Opus version {identification[8]}")
        codec, header_packets = "opus", 2
        channels = identification[9]
        pre_skip = struct.unpack_from("<H", identification, 10)[0]
        sample_rate = granule_rate = OPUS_GRANULE_RATE
    else:
        raise OggError("the stream is neither Vorbis nor Opus")
    if channels == 0 or granule_rate == 0:
        raise OggError(f"{codec} identification header has no channels or no sample rate")

    ended = 0
    for index, page in enumerate(pages):
        ended += page.packets_ended
        if ended >= header_packets:
            # Both codecs' specs start audio on a fresh page, so headers are whole pages.
            if ended > header_packets or not page.ends_on_packet_boundary:
                raise OggError(f"{codec} audio begins on a header page")
            # A stream of headers alone (no audio at all) is left for the caller to refuse.
            if index + 1 < len(pages) and not pages[-1].ends_stream:
                raise OggError("the stream has no end (its last page is missing)")
            return OggAudio(
                codec=codec,
                granule_rate=granule_rate,
                sample_rate=sample_rate,
                channels=channels,
                pre_skip=pre_skip,
                header_bytes=page.offset + page.size,
                audio_pages=tuple(pages[index + 1 :]),
            )
    raise OggError(f"the file ends inside the {codec} headers")
