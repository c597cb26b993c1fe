"""Hot hits: the answer to one ``Range`` value of one rendition, worked out once and reused
by every client that sends that value while the slices stay in memory.

Players of one kind ask for the same ranges (fixed, slice-aligned chunks from the start or
from the same seek points), so what an answer says about its body is kept per (rendition,
``Range`` value): the status, the header lines that describe the body and where it sits in
which slices. What belongs to the request is still checked on every use, before this module
is asked: the client's region, the signature and the licence (``edge.access``). Each use also
looks every slice up in memory (a counted hit, which the eviction policy sees too) and
checks the look-ahead, which is skipped while memory has lost no slice since it was last
found complete.

A ``GET`` with a conditional, a multi-range header, a range that cannot be satisfied or a
slice not in memory goes the general way (``edge.api.rendition``), which answers it fully.
"""

from __future__ import annotations

from dataclasses import dataclass

from edge.cache.fills import StoredObject
from edge.cache.held import Cut
from edge.cache.prefetch import Prefetcher
from edge.cache.store import SliceStore
from edge.http.errors import RangeNotSatisfiable
from edge.http.protocol import HttpConnection
from edge.http.ranges import parse_range
from edge.http.request import Request
from edge.telemetry import metrics
from edge.upstream.client_view import RenditionHead

MAX_ANSWERS = 4096  # (rendition, Range value) pairs held; all forgotten when it fills up
_HELD = b"X-Cache: HIT\r\nX-Cache-Tier: memory\r\n"
_TTFB_HIT = metrics.ttfb("HIT")


@dataclass(slots=True)
class HotAnswer:
    head: RenditionHead  # the head it was worked out for (a reloaded manifest has new ones)
    obj: StoredObject
    status: int
    blocks: tuple[bytes, bytes]  # the whole header block: for unsigned, for signed requests
    content_range: str  # for the access log: "-" on a 200
    length: int
    cuts: tuple[Cut, ...]
    last_index: int
    look_ahead_held_at: int = -1  # memory's removal count when the look-ahead was all held


class HotHits:
    def __init__(self, store: SliceStore, prefetcher: Prefetcher, prefetch_slices: int) -> None:
        self._store = store
        self._prefetcher = prefetcher
        self._prefetch_slices = prefetch_slices
        self._answers: dict[tuple[str, str | None], HotAnswer] = {}

    def __len__(self) -> int:
        return len(self._answers)

    def serve(
        self,
        request: Request,
        conn: HttpConnection,
        head: RenditionHead,
        range_header: str | None,
        signed: bool,
    ) -> HotAnswer | None:
        """Answer a checked, unconditional ``GET`` from memory: the answer sent, or None
        (nothing sent, nothing counted) if it needs the general path."""
        answer = self._answers.get((head.rendition.key, range_header))
        if answer is None or answer.head is not head:
            answer = self._work_out(head, range_header)
            if answer is None:
                return None
        store = self._store
        views = store.views_held(answer.cuts)
        if views is None:
            return None
        request.cache_status = "HIT"
        request.content_range = answer.content_range
        removals = store.memory.removals
        if answer.look_ahead_held_at != removals and self._prefetcher.after_read(
            answer.obj, answer.last_index, self._prefetch_slices
        ):
            answer.look_ahead_held_at = removals
        conn.respond_views(request, answer.status, answer.blocks[signed], views, answer.length)
        if conn.first_byte_at is not None:
            _TTFB_HIT.observe(conn.first_byte_at - request.started)
        return answer

    def _work_out(self, head: RenditionHead, range_header: str | None) -> HotAnswer | None:
        size = head.rendition.size
        if size == 0:
            return None
        if range_header is None:
            start, end, status, content_range = 0, size - 1, 200, "-"
        else:
            try:
                ranges = parse_range(range_header, size)
            except RangeNotSatisfiable:
                return None
            if ranges is None or len(ranges) != 1:
                return None
            start, end, status = ranges[0].start, ranges[0].end, 206
            content_range = ranges[0].content_range(size)
        described = head.content_type_line
        if status == 206:
            described += f"Content-Range: {content_range}\r\n".encode()
        slice_bytes = self._store.slice_bytes
        key = head.rendition.key
        cuts = tuple(
            (
                (key, index),
                max(start - index * slice_bytes, 0),
                min(end + 1 - index * slice_bytes, slice_bytes),
            )
            for index in range(start // slice_bytes, end // slice_bytes + 1)
        )
        answer = HotAnswer(
            head,
            StoredObject(key, size),
            status,
            (head.unsigned_block + described + _HELD, head.signed_block + described + _HELD),
            content_range,
            end - start + 1,
            cuts,
            end // slice_bytes,
        )
        if len(self._answers) >= MAX_ANSWERS:
            self._answers.clear()
        self._answers[(key, range_header)] = answer
        return answer
