"""RFC 9110 byte ranges: parse a ``Range`` header against a representation's length.

aiohttp's ``request.http_range`` handles a single range only, so this is our own parser. It
takes every form the RFC allows (``a-b``, ``a-``, ``-n``, lists) and refuses what would let a
client amplify its request (too many ranges; overlapping ranges are coalesced).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from edge.http.errors import RangeNotSatisfiable

MAX_RANGES = 16
_SIMPLE = re.compile(r"bytes=([0-9]{1,18})-([0-9]{1,18})?")
_SPEC = re.compile(r"(\d{1,19})?-(\d{1,19})?")
_OWS = " \t"


@dataclass(frozen=True, slots=True)
class ByteRange:
    start: int
    end: int  # inclusive, as on the wire

    @property
    def length(self) -> int:
        return self.end - self.start + 1

    def content_range(self, size: int) -> str:
        return f"bytes {self.start}-{self.end}/{size}"


def parse_range(header: str, size: int) -> list[ByteRange] | None:
    """The ranges to send, in request order, or ``None`` to ignore the header and send it all.

    Raises :class:`RangeNotSatisfiable` (416) when the header is malformed, asks for too many
    ranges, or none of its ranges overlaps the ``size`` bytes there are.
    """
    simple = _SIMPLE.fullmatch(header)  # "bytes=a-b" or "bytes=a-", as players send
    if simple is not None:
        start, last = int(simple[1]), simple[2]
        end = size - 1 if last is None else int(last)
        if end >= start and start < size:
            return [ByteRange(start, min(end, size - 1))]
        # Else the general path below finds the same fault and says so.
    unit, equals, specs = header.partition("=")
    if not equals or unit.strip(_OWS).lower() != "bytes":
        return None  # another range unit: RFC 9110 says to ignore the header
    elements = [spec.strip(_OWS) for spec in specs.split(",")]
    elements = [spec for spec in elements if spec]
    if not elements:
        raise RangeNotSatisfiable("Range header names no range", size=size, code="invalid_range")
    if len(elements) > MAX_RANGES:
        raise RangeNotSatisfiable(
            f"at most {MAX_RANGES} ranges per request", size=size, code="too_many_ranges"
        )
    ranges: list[ByteRange] = []
    for spec in elements:
        match = _SPEC.fullmatch(spec)
        if match is None or match.groups() == (None, None):
            raise RangeNotSatisfiable(
                f"malformed range {spec[:40]!r}", size=size, code="invalid_range"
            )
        first, last = match.groups()
        if first is None:  # suffix range: the last N bytes
            suffix = int(last)
            if suffix > 0 and size > 0:
                ranges.append(ByteRange(max(0, size - suffix), size - 1))
            continue
        start = int(first)
        end = size - 1 if last is None else int(last)
        if last is not None and end < start:
            raise RangeNotSatisfiable(
                f"range {spec!r} ends before it starts", size=size, code="invalid_range"
            )
        if start < size:
            ranges.append(ByteRange(start, min(end, size - 1)))
    if not ranges:
        raise RangeNotSatisfiable(f"no range overlaps the {size} bytes of this object", size=size)
    return _coalesce(ranges)


def _coalesce(ranges: list[ByteRange]) -> list[ByteRange]:
    """Merge ranges that overlap or touch; a merged range takes its first member's place."""
    if len(ranges) == 1:
        return ranges
    order = sorted(range(len(ranges)), key=lambda i: ranges[i].start)
    groups: list[tuple[int, ByteRange]] = []  # (first request position, merged range)
    for i in order:
        current = ranges[i]
        if groups and current.start <= groups[-1][1].end + 1:
            position, merged = groups[-1]
            groups[-1] = (min(position, i), ByteRange(merged.start, max(merged.end, current.end)))
        else:
            groups.append((i, current))
    groups.sort(key=lambda group: group[0])
    return [merged for _, merged in groups]
