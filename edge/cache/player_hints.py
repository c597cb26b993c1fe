"""CMCD's prefetch hints (``edge.telemetry.cmcd``): ``nrr``, the byte range a player will ask
for next, and ``nor``, the object it will ask for next (a URL relative to the request's).
They drive origin fetches, so they are held to the next-track hint's rules
(``edge.cache.next_track``):

- ``nrr`` of the rendition being read (without ``nor``, or with a ``nor`` naming this same
  rendition): the slices the range covers, at most ``cache.prefetch_slices`` of them from
  its start, are prefetched unless memory holds them or this request's own look-ahead is
  fetching them. One job of the prefetcher: its queue, its concurrency, paused while the
  origin is in trouble. The request passed the signature and licence checks for this very
  rendition, which is all such a hint reaches; with the look-ahead off
  (``cache.prefetch_slices = 0``) it is off too.
- ``nor`` naming another rendition, of another track or of this one, is a next-track hint:
  the same signature rule (with signed URLs on, it must carry its own valid signature), the
  licence checked for the client's region, the per-connection budget and repeat rule it
  shares with ``X-Encore-Next``, and only the first ``cache.next_track_slices`` slices. An
  ``nrr`` sent with it is not used.

Only hints: whatever is wrong is ignored and counted (``encore_player_hints_total{hint,
outcome}``), never answered with an error.
"""

from __future__ import annotations

import enum
from urllib.parse import urljoin

from edge.cache.fills import StoredObject
from edge.cache.next_track import NextTrackHints, Outcome
from edge.cache.prefetch import Prefetcher, PrefetchReason
from edge.telemetry import metrics
from edge.telemetry.cmcd import CmcdReport
from origin.manifest import Rendition


class RangeOutcome(enum.Enum):
    """What became of an ``nrr`` hint (a ``nor`` has the next-track hint's outcomes)."""

    ACCEPTED = "accepted"  # a prefetch was queued
    HELD = "held"  # memory, or the request's own look-ahead, has every slice it covers
    DROPPED = "dropped"  # prefetch is paused or its queue is full
    OUT_OF_RANGE = "out_of_range"  # it starts past the rendition's end
    OFF = "off"  # cache.prefetch_slices = 0


class PlayerHints:
    def __init__(
        self, next_track: NextTrackHints, prefetcher: Prefetcher, *, look_ahead: int
    ) -> None:
        self._next_track = next_track
        self._prefetcher = prefetcher
        self._look_ahead = look_ahead  # cache.prefetch_slices: also the most a range warms

    def consider(
        self,
        report: CmcdReport,
        raw_path: str,
        connection_state: dict[str, object] | None,
        *,
        region: str,
        playing: Rendition,
        last_read: int,
    ) -> None:
        """Act on the hints of a rendition GET of ``raw_path`` (as sent) that read up to
        slice ``last_read`` of ``playing``."""
        nrr, nor = report.next_range, report.next_object
        if nor is not None:
            try:
                target = urljoin(raw_path, nor)
            except ValueError:  # urllib's verdict on a netloc such as "//[x"
                target = ""
            if not target.startswith("/"):  # another host, or dots past the root
                metrics.player_hints("nor", Outcome.MALFORMED.value).inc()
                return
            if target.partition("?")[0] != raw_path:
                outcome = self._next_track.decide(
                    target, connection_state, region=region, playing=playing
                )
                metrics.player_hints("nor", outcome.value).inc()
                return
        if nrr is not None:
            obj = StoredObject(playing.key, playing.size)
            metrics.player_hints("nrr", self._next_range(obj, nrr, last_read).value).inc()

    def _next_range(
        self, obj: StoredObject, asked: tuple[int, int | None], last_read: int
    ) -> RangeOutcome:
        count = self._look_ahead
        if count <= 0:
            return RangeOutcome.OFF
        first_byte, last_byte = asked
        if first_byte >= obj.size:
            return RangeOutcome.OUT_OF_RANGE
        slice_bytes = self._prefetcher.slice_bytes
        first = first_byte // slice_bytes
        last = (obj.size - 1) // slice_bytes
        if last_byte is not None:
            last = min(last, last_byte // slice_bytes)
        last = min(last, first + count - 1)
        # This request's look-ahead takes last_read+1 .. last_read+count already.
        wanted = [
            index
            for index in self._prefetcher.missing(obj.key, range(first, last + 1))
            if not last_read < index <= last_read + count
        ]
        if not wanted:
            return RangeOutcome.HELD
        low, high = wanted[0], wanted[-1]
        prefetcher = self._prefetcher
        if not prefetcher.submit(
            lambda: prefetcher.fetch(obj, low, high, PrefetchReason.NEXT_RANGE)
        ):
            return RangeOutcome.DROPPED
        return RangeOutcome.ACCEPTED
