"""The next-track hint: ``X-Encore-Next`` names the track a player will play next, and the edge
warms the first slices of it, so the next track starts from the cache.

A hint is the next track's id (``demo-002``) or the URL path the player will request for it
(``/v1/tracks/demo-002`` or ``/v1/tracks/demo-002/160``, with its query). It drives origin
fetches, so it is held to what the client may fetch:

- With signed URLs required, only a hint that is itself a validly signed track URL (for the
  client's region when ``auth.bind_region`` is on) is honoured: one signed URL of the track
  playing cannot bring the rest of the catalogue to the edge. A bare id is then ignored.
- The licence of the hinted track is checked for the client's region before anything is
  fetched (``edge.cache.warming``).
- It warms one rendition (the one a path names, else the bitrate being played), and only its
  first ``cache.next_track_slices`` slices.
- Per connection, a hint equal to the last one honoured is not acted on again (players repeat
  it with every range request), and new hints are rate-limited: :data:`BURST` at once, then
  one per :data:`REFILL_S` seconds.
- Unknown ids cost the origin one manifest GET per ``edge.negative_ttl_s`` (the manifest
  store's negative cache); malformed ones none.

A hint is only a hint: whatever is wrong with it is ignored and counted
(``encore_next_track_hints_total{outcome}``), never answered with an error.
"""

from __future__ import annotations

import enum
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qsl

from multidict import MultiDict

from edge.access.checks import Access
from edge.cache.prefetch import Prefetcher, PrefetchReason
from edge.cache.warming import PickRenditions, same_bitrate, warm_track
from edge.http.errors import EncoreError
from edge.telemetry import metrics
from edge.upstream.manifests import ManifestStore
from origin import layout
from origin.manifest import Manifest, Rendition

log = logging.getLogger(__name__)

HEADER = "X-Encore-Next"
BURST = 2  # new hints one connection may have honoured at once
REFILL_S = 10.0  # then one more per this many seconds
MAX_HINT_CHARS = 1024
_PATH = re.compile(
    rf"/v1/tracks/(?P<track>{layout.TRACK_ID_PATTERN})(?:/(?P<rendition>{layout.RENDITION_PATTERN}))?"
)
_STATE = "next_track"  # this feature's key in the connection's state


class Outcome(enum.Enum):
    """What became of a hint (a metric label)."""

    ACCEPTED = "accepted"  # a warm was queued (the licence is checked there)
    DROPPED = "dropped"  # prefetch is paused or its queue is full: the next repeat tries again
    REPEAT = "repeat"  # the same hint as the last one honoured on this connection
    RATE_LIMITED = "rate_limited"
    UNSIGNED = "unsigned"  # signed URLs are required and the hint carries no signature
    BAD_SIGNATURE = "bad_signature"
    MALFORMED = "malformed"
    OFF = "off"  # cache.next_track_slices = 0, or no per-connection state to limit it by


@dataclass(frozen=True, slots=True)
class Hint:
    track_id: str
    rendition: str | None  # named by a path hint
    path: str | None  # the path of a path hint (what a signature covers)
    query: MultiDict[str] | None  # a path hint's query, if it has one


def parse_hint(value: str) -> Hint | None:
    """The hint in a header value, or None if it is not one."""
    value = value.strip()
    if not value or len(value) > MAX_HINT_CHARS:
        return None
    if not value.startswith("/"):
        return Hint(value, None, None, None) if layout.is_track_id(value) else None
    path, _, query = value.partition("?")
    match = _PATH.fullmatch(path)
    if match is None:
        return None
    if not query:
        return Hint(match["track"], match["rendition"], path, None)
    try:
        pairs = parse_qsl(query, keep_blank_values=True, max_num_fields=32)
    except ValueError:  # more fields than any signed URL has
        return None
    return Hint(match["track"], match["rendition"], path, MultiDict(pairs))


class HintBudget:
    """One connection's hint rate limit (a token bucket) and its last honoured hint."""

    __slots__ = ("_clock", "_last_refill", "_tokens", "last")

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._tokens = float(BURST)
        self._last_refill = clock()
        self.last: str | None = None

    def take(self) -> bool:
        now = self._clock()
        self._tokens = min(BURST, self._tokens + (now - self._last_refill) / REFILL_S)
        self._last_refill = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True


class NextTrackHints:
    """Acts on the hints of one worker's requests."""

    def __init__(
        self,
        access: Access,
        manifests: ManifestStore,
        prefetcher: Prefetcher,
        *,
        slices: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._access = access
        self._manifests = manifests
        self._prefetcher = prefetcher
        self._slices = slices
        self._clock = clock

    def consider(
        self,
        value: str,
        connection_state: dict[str, object] | None,
        *,
        region: str,
        playing: Rendition,
    ) -> Outcome:
        """Queue the warm a hint asks for, if it may have it; what became of it."""
        outcome = self.decide(value, connection_state, region=region, playing=playing)
        metrics.next_track_hints(outcome.value).inc()
        return outcome

    def decide(  # noqa: PLR0911 - one return per outcome
        self,
        value: str,
        connection_state: dict[str, object] | None,
        *,
        region: str,
        playing: Rendition,
    ) -> Outcome:
        """As :meth:`consider`, uncounted (CMCD's ``nor`` counts its own outcomes)."""
        if self._slices <= 0 or connection_state is None:
            return Outcome.OFF
        budget = connection_state.get(_STATE)
        if not isinstance(budget, HintBudget):
            budget = connection_state[_STATE] = HintBudget(self._clock)
        if value == budget.last:
            return Outcome.REPEAT  # checked when first honoured
        hint = parse_hint(value)
        if hint is None:
            return Outcome.MALFORMED
        signatures = self._access.signatures
        if signatures.required:
            if hint.path is None or hint.query is None:
                return Outcome.UNSIGNED
            if signatures.problem(hint.path, hint.query, region) is not None:
                return Outcome.BAD_SIGNATURE
        if not budget.take():
            return Outcome.RATE_LIMITED
        if not self._prefetcher.submit(lambda: self._warm(hint, region, playing)):
            return Outcome.DROPPED
        budget.last = value
        return Outcome.ACCEPTED

    async def _warm(self, hint: Hint, region: str, playing: Rendition) -> None:
        try:
            await warm_track(
                self._manifests,
                self._access.licences,
                self._prefetcher,
                hint.track_id,
                region=region,
                pick=_named(hint.rendition) if hint.rendition else same_bitrate(playing),
                slices=self._slices,
                reason=PrefetchReason.NEXT_TRACK,
            )
        except EncoreError as exc:  # unknown, unlicensed or unreachable: nothing to warm
            log.debug("not warming next track %s: %s", hint.track_id, exc.message)


def _named(name: str) -> PickRenditions:
    def pick(manifest: Manifest) -> list[Rendition]:
        rendition = manifest.renditions.get(name)
        return [rendition] if rendition is not None else []

    return pick
