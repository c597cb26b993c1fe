"""Request traces for ``encore-edge simulate``: a plain trace, or the edge's access log (both
described in the README, *Sizing a cache*).

Plain trace: one request per line, ``timestamp key size`` separated by whitespace or commas,
with an optional ``offset length`` for a range; ``#`` starts a comment. Access log lines are
recognised by their quoted request line; GETs of renditions answered ``200`` or ``206`` with
a ``Content-Range`` (logged last) are replayed, other lines are skipped.

Requests are kept in flat arrays (keys as small integers), so a million fit in tens of MB.
"""

from __future__ import annotations

import re
from array import array
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

MAX_OBJECT_BYTES = 1 << 45  # far above any audio object; a bigger size is a broken line

_ACCESS = re.compile(
    r'"GET (?P<path>/v1/tracks/[^/ ?]+/[^/ ?]+)(?:\?\S*)? HTTP/[0-9.]+" (?P<status>\d{3}) '
    r"(?P<bytes>\d+|-) .*?(?:bytes (?P<first>\d+)-(?P<last>\d+)/(?P<size>\d+))?\s*$"
)
_SEPARATORS = re.compile(r"[\s,]+")


class TraceError(ValueError):
    """The trace cannot be used at all; the message says why."""


@dataclass(slots=True)
class Trace:
    keys: list[str] = field(default_factory=list)  # key id -> key
    key_ids: array[int] = field(default_factory=lambda: array("q"))
    sizes: array[int] = field(default_factory=lambda: array("q"))
    offsets: array[int] = field(default_factory=lambda: array("q"))
    lengths: array[int] = field(default_factory=lambda: array("q"))
    skipped: int = 0
    first_problem: str = ""

    def __len__(self) -> int:
        return len(self.key_ids)


class _Builder:
    def __init__(self) -> None:
        self.trace = Trace()
        self._ids: dict[str, int] = {}

    def add(self, key: str, size: int, offset: int, length: int) -> None:
        key_id = self._ids.get(key)
        if key_id is None:
            key_id = self._ids[key] = len(self.trace.keys)
            self.trace.keys.append(key)
        trace = self.trace
        trace.key_ids.append(key_id)
        trace.sizes.append(size)
        trace.offsets.append(offset)
        trace.lengths.append(length)

    def skip(self, number: int, problem: str) -> None:
        if not self.trace.first_problem:
            self.trace.first_problem = f"line {number}: {problem}"
        self.trace.skipped += 1


def _trace_line(builder: _Builder, number: int, line: str) -> None:
    fields = _SEPARATORS.split(line.strip())
    if len(fields) not in (3, 5):
        builder.skip(number, f"expected 3 or 5 fields, got {len(fields)}")
        return
    try:
        size = int(fields[2])
        offset, length = (int(fields[3]), int(fields[4])) if len(fields) == 5 else (0, size)
    except ValueError:
        builder.skip(number, "size, offset and length must be whole numbers")
        return
    if not 0 < size <= MAX_OBJECT_BYTES or offset < 0 or length <= 0 or offset >= size:
        builder.skip(number, "size, offset or length out of range")
        return
    builder.add(fields[1], size, offset, min(length, size - offset))


def _access_line(builder: _Builder, number: int, line: str) -> None:
    match = _ACCESS.search(line)
    if match is None:
        builder.skip(number, "not a rendition GET")
        return
    status = match["status"]
    if status == "206" and match["size"]:
        first, last = int(match["first"]), int(match["last"])
        builder.add(match["path"], int(match["size"]), first, last - first + 1)
    elif status == "200" and match["bytes"] not in ("-", "0"):
        size = int(match["bytes"])
        builder.add(match["path"], size, 0, size)
    else:
        builder.skip(number, f"status {status} without a replayable body")


def parse_trace(lines: Iterable[str]) -> Trace:
    """Requests in order; lines that cannot be replayed are counted in ``skipped``."""
    builder = _Builder()
    for number, line in enumerate(lines, start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        # A quoted request line marks an access log line; trace lines have no quotes. Other
        # log lines (startup messages) are skipped as lines that cannot be replayed.
        if '"' in line:
            _access_line(builder, number, line)
        else:
            _trace_line(builder, number, line)
    return builder.trace


def read_trace(path: Path) -> Trace:
    try:
        with path.open(encoding="utf-8", errors="replace") as lines:
            trace = parse_trace(lines)
    except OSError as exc:
        raise TraceError(f"{path}: {exc.strerror}") from None
    if not len(trace):
        detail = f" ({trace.first_problem})" if trace.first_problem else ""
        raise TraceError(f"{path}: no replayable requests{detail}")
    return trace
