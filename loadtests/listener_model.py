"""The playback model of a load-test listener: a play head, the buffer ahead of it, stalls, and
the renditions and segments it plays (bitrate choice is in ``listener_abr``). No network and
no wall clock: time comes from an injected clock, so the model runs the same in Locust and in
unit tests.

Media time runs ``speed`` times faster than the clock, so a short run stands for a long one;
durations the player lives through (startup, stalls, time played) are clock seconds, amounts
of audio (buffer, position, audio played) are media seconds.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

Clock = Callable[[], float]
EPSILON_S = 1e-6  # media seconds treated as equal (seek tables are float seconds from JSON)


class State(StrEnum):
    STARTING = "starting"  # before the first sound of a play, or after a seek
    PLAYING = "playing"
    STALLED = "stalled"  # the buffer ran dry before the end
    ENDED = "ended"


@dataclass(frozen=True, slots=True)
class BufferRules:
    startup_s: float = 2.0  # audio buffered before the first sound (and after a seek)
    resume_s: float = 2.0  # audio buffered before a stalled player plays again
    target_s: float = 12.0  # audio a player keeps ahead: it fetches while it has less


@dataclass(frozen=True, slots=True)
class PlaybackEvent:
    """A wait the listener noticed: ``startup``, ``seek`` (until sound after a seek) or
    ``stall``, lasting ``seconds`` of clock time."""

    kind: str
    seconds: float


@dataclass(slots=True)
class Progress:
    """Clock seconds spent playing and stalled, and media seconds played per bitrate (kbps)."""

    playing_s: float = 0.0
    stalled_s: float = 0.0
    media_s_by_kbps: dict[int, float] = field(default_factory=dict)

    def add_media(self, kbps: int, seconds: float) -> None:
        self.media_s_by_kbps[kbps] = self.media_s_by_kbps.get(kbps, 0.0) + seconds


class Playback:
    """One play of one track from ``start_s`` to ``end_s`` (the track's end, or where the
    listener skips); call :meth:`advance` before reading it, :meth:`add` for each segment."""

    def __init__(
        self,
        *,
        clock: Clock,
        speed: float,
        end_s: float,
        rules: BufferRules = BufferRules(),
        start_s: float = 0.0,
        asked_at: float | None = None,
    ) -> None:
        self._clock = clock
        self.speed = speed
        self.end_s = end_s
        self.rules = rules
        self.position_s = start_s
        self.buffered_to_s = start_s
        self.state = State.STARTING
        self.complete = start_s >= end_s - EPSILON_S  # every byte up to end_s is buffered
        self.stalls = 0
        self.events: list[PlaybackEvent] = []  # drained by the player
        self.progress = Progress()  # since the last take_progress()
        self._waiting_kind = "startup"
        # Startup counts from the moment the listener pressed play (before the manifest).
        self._waiting_since = clock() if asked_at is None else asked_at
        self._last = clock()
        self._segments: deque[tuple[float, int]] = deque()  # (media end, kbps) ahead

    @property
    def buffer_s(self) -> float:
        return self.buffered_to_s - self.position_s

    @property
    def waiting(self) -> bool:
        """Whether the listener hears nothing while it wants to (startup, seek or stall)."""
        return self.state in (State.STARTING, State.STALLED)

    def advance(self) -> None:
        """Move the play head to the clock's now, stalling where the buffer runs dry."""
        now = self._clock()
        elapsed, self._last = now - self._last, now
        if self.state is State.STALLED:
            self.progress.stalled_s += elapsed
        if self.state is not State.PLAYING or elapsed <= 0:
            return
        playable_s = self.buffer_s
        if elapsed * self.speed < playable_s - EPSILON_S:
            self._play(elapsed * self.speed)
            self.progress.playing_s += elapsed
            return
        played_for = playable_s / self.speed  # the buffer ran out this far into `elapsed`
        self._play(playable_s)
        self.progress.playing_s += played_for
        if self.complete:
            self.state = State.ENDED
            return
        self.state = State.STALLED
        self.stalls += 1
        self._waiting_kind = "stall"
        self._waiting_since = now - (elapsed - played_for)
        self.progress.stalled_s += elapsed - played_for

    def add(self, media_s: float, kbps: int) -> None:
        """A segment arrived: ``media_s`` more seconds of audio at ``kbps``."""
        self.advance()
        self.buffered_to_s = min(self.buffered_to_s + media_s, self.end_s)
        self._segments.append((self.buffered_to_s, kbps))
        if self.buffered_to_s >= self.end_s - EPSILON_S:
            self.complete = True
        threshold = self.rules.resume_s if self.state is State.STALLED else self.rules.startup_s
        if self.waiting and (self.buffer_s >= threshold - EPSILON_S or self.complete):
            now = self._clock()
            self.events.append(PlaybackEvent(self._waiting_kind, now - self._waiting_since))
            self.state = State.PLAYING

    def seek(self, to_s: float) -> None:
        """Jump to ``to_s``: the buffer is dropped and the player starts again from there."""
        self.advance()
        self.position_s = self.buffered_to_s = min(to_s, self.end_s)
        self._segments.clear()
        self.complete = self.position_s >= self.end_s - EPSILON_S
        self.state = State.ENDED if self.complete else State.STARTING
        self._waiting_kind = "seek"
        self._waiting_since = self._clock()

    def close(self) -> None:
        """The play is over (the listener left): a stall under way is reported as it stands."""
        self.advance()
        if self.state is State.STALLED:
            self.events.append(PlaybackEvent("stall", self._clock() - self._waiting_since))
        self.state = State.ENDED

    def wants_data(self) -> bool:
        """Whether the player should fetch now: it is waiting, or its buffer is below target."""
        if self.complete:
            return False
        # At the target counts as below it: the wait until below it is then zero.
        return self.waiting or self.buffer_s <= self.rules.target_s + EPSILON_S

    def seconds_until(self, media_s: float) -> float:
        """Clock seconds until the play head reaches ``media_s`` (inf unless playing)."""
        if self.state is not State.PLAYING:
            return math.inf
        return max(0.0, (min(media_s, self.buffered_to_s) - self.position_s) / self.speed)

    def seconds_until_below_target(self) -> float:
        """Clock seconds until the buffer falls below its target (or the end is reached)."""
        if self.complete:
            return self.seconds_until(self.end_s)
        return self.seconds_until(self.buffered_to_s - self.rules.target_s)

    def take_progress(self) -> Progress:
        """What happened since the last call (for time series), and start counting anew."""
        self.advance()
        taken, self.progress = self.progress, Progress()
        return taken

    def _play(self, media_s: float) -> None:
        while media_s > EPSILON_S and self._segments:
            segment_end, kbps = self._segments[0]
            step = min(media_s, segment_end - self.position_s)
            self.progress.add_media(kbps, step)
            self.position_s += step
            media_s -= step
            if self.position_s >= segment_end - EPSILON_S:
                self._segments.popleft()
        self.position_s = min(self.position_s, self.buffered_to_s)


# -- renditions and segments ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rendition:
    """One rendition as the edge's manifest describes it."""

    name: str
    url: str
    codec: str
    bitrate_kbps: int
    size: int
    duration_s: float
    header_bytes: int
    seek_times: tuple[float, ...]
    seek_offsets: tuple[int, ...]

    @classmethod
    def from_view(cls, doc: Mapping[str, Any]) -> Rendition:
        table = doc["seek_table"]
        points = [(float(t), int(offset)) for t, offset in table["points"]]
        if not points:
            raise ValueError(f"rendition {doc['name']!r} has an empty seek table")
        return cls(
            name=str(doc["name"]),
            url=str(doc["url"]),
            codec=str(doc["codec"]),
            bitrate_kbps=int(doc["bitrate_kbps"]),
            size=int(doc["size"]),
            duration_s=float(doc["duration_s"]),
            header_bytes=int(table["header_bytes"]),
            seek_times=tuple(t for t, _ in points),
            seek_offsets=tuple(offset for _, offset in points),
        )


def choose_ladder(view: Mapping[str, Any]) -> list[Rendition]:
    """The renditions a player switches between: one codec's (the one with most rungs, then
    the highest top rate), lowest bitrate first. Switching codec would mean a new decoder."""
    by_codec: dict[str, list[Rendition]] = {}
    for doc in view["renditions"]:
        rendition = Rendition.from_view(doc)
        by_codec.setdefault(rendition.codec, []).append(rendition)
    if not by_codec:
        raise ValueError("the manifest lists no renditions")
    ladder = max(by_codec.values(), key=lambda rs: (len(rs), max(r.bitrate_kbps for r in rs)))
    return sorted(ladder, key=lambda r: r.bitrate_kbps)


@dataclass(frozen=True, slots=True)
class Segment:
    """Bytes ``first_byte..last_byte`` of a rendition, holding audio up to ``end_s``."""

    first_byte: int
    last_byte: int
    end_s: float

    @property
    def length(self) -> int:
        return self.last_byte - self.first_byte + 1

    @property
    def range_header(self) -> str:
        return f"bytes={self.first_byte}-{self.last_byte}"


def segment_from(rendition: Rendition, from_s: float, target_s: float) -> Segment | None:
    """The segment that carries audio from ``from_s``: from the last seek point at or before
    it to the first point ``target_s`` later (or the end); None past the end. Seek points are
    Ogg page starts, so every segment starts where a decoder can pick up."""
    if from_s >= rendition.duration_s - EPSILON_S:
        return None
    times, offsets = rendition.seek_times, rendition.seek_offsets
    start = max(0, bisect.bisect_right(times, from_s + EPSILON_S) - 1)
    end = bisect.bisect_left(times, times[start] + target_s - EPSILON_S, lo=start + 1)
    if end < len(times):
        return Segment(offsets[start], offsets[end] - 1, times[end])
    return Segment(offsets[start], rendition.size - 1, rendition.duration_s)
