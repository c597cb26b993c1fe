"""``multipart/byteranges`` framing (RFC 9110 section 14.6), with its length known up front."""

from __future__ import annotations

import secrets

from edge.http.ranges import ByteRange


class ByteRangesBody:
    """The part headers and closing delimiter around the ranges' bytes."""

    def __init__(self, ranges: list[ByteRange], size: int, content_type: str) -> None:
        boundary = secrets.token_hex(16)
        self.content_type = f"multipart/byteranges; boundary={boundary}"
        self.part_heads = [
            (
                f"{'' if i == 0 else chr(13) + chr(10)}--{boundary}\r\n"
                f"Content-Type: {content_type}\r\n"
                f"Content-Range: {r.content_range(size)}\r\n\r\n"
            ).encode("ascii")
            for i, r in enumerate(ranges)
        ]
        self.tail = f"\r\n--{boundary}--\r\n".encode("ascii")
        self.content_length = (
            sum(len(head) for head in self.part_heads)
            + sum(r.length for r in ranges)
            + len(self.tail)
        )
