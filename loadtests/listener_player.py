"""A listener's player, one step at a time: manifest, rendition choice, codec headers, ranges
at playback pace, seeks and skips, a next-track hint, then the next track.

It knows no HTTP library: each request goes through a ``Transport`` (the locustfile's sends
it with Locust's client) and what the listener lives through goes to a ``QoeSink``. Each
:meth:`Player.step` does at most one request and returns how long to wait before the next.
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from loadtests import listener_cmcd as cmcd
from loadtests.listener_abr import Abr, AbrRules, ThroughputEstimate
from loadtests.listener_behaviour import Habits, PlayPlan, Popularity, draw_plan
from loadtests.listener_model import (
    BufferRules,
    Clock,
    Playback,
    Progress,
    Rendition,
    Segment,
    State,
    choose_ladder,
    segment_from,
)

NEXT_TRACK_HEADER = "X-Encore-Next"
RETRY_AFTER_S = 0.25  # clock seconds before a failed request is tried again
GIVE_UP_AFTER = 4  # failed requests in a row that end a play
MAX_WAIT_S = 1.0  # wake at least this often: time series stay fine-grained, stops prompt
MIN_WAIT_S = 0.001  # a wait is never zero: rounding at the target must not spin


@dataclass(frozen=True, slots=True)
class Fetch:
    kind: str  # "manifest", "header" or "range": the name Locust reports the request under
    url: str  # path and query
    headers: Mapping[str, str]
    length: int | None = None  # the body a range must have


@dataclass(frozen=True, slots=True)
class Reply:
    size: int
    ttfb_s: float
    elapsed_s: float
    failure: str | None = None  # why it is not what was asked for, e.g. "HTTP 503"
    body: bytes = b""  # kept for manifests only


Transport = Callable[[Fetch], Reply]


class QoeSink(Protocol):
    def quality(self, name: str, seconds: float) -> None: ...
    def request(self, kind: str, ttfb_s: float | None, failure: str | None) -> None: ...
    def progress(self, progress: Progress) -> None: ...
    def play_ended(self, how: str) -> None: ...


@dataclass(frozen=True, slots=True)
class PlayerSettings:
    speed: float = 1.0
    segment_s: float = 4.0  # audio per range request (whole Ogg pages, so a little more)
    hint_lead_s: float = 20.0  # send the next-track hint this close to the end of a track
    buffer: BufferRules = field(default_factory=BufferRules)
    abr: AbrRules = field(default_factory=AbrRules)
    habits: Habits = field(default_factory=Habits)
    headers: Mapping[str, str] = field(default_factory=dict)  # e.g. the client-region header


@dataclass(slots=True)
class _Play:
    track_id: str
    plan: PlayPlan
    ladder: list[Rendition]
    abr: Abr
    playback: Playback
    headers_fetched: set[str] = field(default_factory=set)
    failures_in_a_row: int = 0
    stalls_told: int = 0  # stalls before the last range request (CMCD bs: one since then)
    seeked: bool = False

    @property
    def rendition(self) -> Rendition:
        return self.ladder[self.abr.index]

    @property
    def pending_seek_s(self) -> float | None:
        return None if self.seeked else self.plan.seek_at_s


def unsigned(path: str) -> str:
    return path


class Player:
    """One listener's player: plays track after track until :meth:`stop`."""

    def __init__(
        self,
        *,
        transport: Transport,
        sink: QoeSink,
        popularity: Popularity,
        clock: Clock,
        settings: PlayerSettings = PlayerSettings(),
        sign: Callable[[str], str] = unsigned,
        rng: random.Random | None = None,
    ) -> None:
        self._fetch = transport
        self._sink = sink
        self._popularity = popularity
        self._clock = clock
        self._settings = settings
        self._sign = sign
        self._rng = rng or random.Random()
        self.session_id = str(uuid.UUID(int=self._rng.getrandbits(128)))
        self._estimate = ThroughputEstimate()  # kept from track to track, as players do
        self.next_track = popularity.draw(self._rng)
        self.play: _Play | None = None

    def step(self) -> float:
        """Do the next thing a player would do; the clock seconds to wait before the next."""
        if self.play is None:
            return self._start_play()
        play = self.play
        playback = play.playback
        self._report(play)
        if playback.state is State.ENDED:
            self._finish("skipped" if play.plan.skipped(play.ladder[0].duration_s) else "complete")
            return 0.0
        seek_at = play.pending_seek_s
        if seek_at is not None and playback.position_s >= seek_at:
            play.seeked = True
            playback.seek(play.plan.seek_to_s or 0.0)
            return 0.0
        if playback.wants_data():
            return self._fetch_audio(play)
        wait = playback.seconds_until_below_target()
        if seek_at is not None:
            wait = min(wait, playback.seconds_until(seek_at))
        return min(max(wait, MIN_WAIT_S), MAX_WAIT_S)

    def stop(self) -> None:
        """The listener leaves (the test stops): account for the play under way."""
        if self.play is not None:
            self._finish("stopped")

    # -- steps -------------------------------------------------------------------------------

    def _start_play(self) -> float:
        asked_at = self._clock()  # startup counts from here, the manifest included
        track_id = self.next_track
        self.next_track = self._popularity.draw(self._rng, instead_of=track_id)
        path = f"/v1/tracks/{track_id}"
        data = self._session_cmcd(track_id) | {"ot": cmcd.MANIFEST, "su": True}
        reply = self._fetch(Fetch("manifest", self._url(path, data), self._settings.headers))
        ladder: list[Rendition] = []
        if reply.failure is None:
            try:
                ladder = choose_ladder(json.loads(reply.body))
            except (ValueError, KeyError, TypeError) as exc:
                reply = Reply(reply.size, reply.ttfb_s, reply.elapsed_s, f"bad manifest: {exc}")
        self._sink.request("manifest", reply.ttfb_s, reply.failure)
        if not ladder:
            self._sink.play_ended("failed")
            return RETRY_AFTER_S
        plan = draw_plan(self._rng, ladder[0].duration_s, self._settings.habits)
        abr = Abr(
            [r.bitrate_kbps for r in ladder],
            speed=self._settings.speed,
            estimate=self._estimate,
            rules=self._settings.abr,
        )
        playback = Playback(
            clock=self._clock,
            speed=self._settings.speed,
            end_s=plan.stop_s,
            rules=self._settings.buffer,
            asked_at=asked_at,
        )
        self.play = _Play(track_id, plan, ladder, abr, playback)
        return 0.0

    def _fetch_audio(self, play: _Play) -> float:
        rendition = play.rendition
        playback = play.playback
        if rendition.name not in play.headers_fetched:
            # A decoder needs the codec headers of the rendition it decodes: once per rung.
            url = self._url(rendition.url, self._common_cmcd(play) | {"ot": cmcd.INIT})
            headers = {**self._settings.headers, "Range": f"bytes=0-{rendition.header_bytes - 1}"}
            reply = self._request(Fetch("header", url, headers, rendition.header_bytes))
            if self._failed(play, reply):
                return self._after_failure(play)
            play.headers_fetched.add(rendition.name)
            return 0.0
        segment = segment_from(rendition, playback.buffered_to_s, self._settings.segment_s)
        if segment is None:  # the seek table ends a hair before end_s
            playback.add(playback.end_s - playback.buffered_to_s, rendition.bitrate_kbps)
            return 0.0
        reply = self._request(self._range_fetch(play, segment))
        if self._failed(play, reply):
            return self._after_failure(play)
        media_s = segment.end_s - playback.buffered_to_s
        playback.add(media_s, rendition.bitrate_kbps)
        switch = play.abr.on_segment(reply.size, reply.elapsed_s, media_s, playback.buffer_s)
        if switch:
            self._sink.quality("switch_up" if switch > 0 else "switch_down", 0.0)
        return 0.0

    def _range_fetch(self, play: _Play, segment: Segment) -> Fetch:
        rendition = play.rendition
        playback = play.playback
        playback.advance()
        speed = self._settings.speed
        following = segment_from(rendition, segment.end_s, self._settings.segment_s)
        # The track's end, not the planned skip: a player does not know when it will be skipped.
        near_end = rendition.duration_s - segment.end_s <= self._settings.hint_lead_s
        next_path = f"/v1/tracks/{self.next_track}"
        data = self._common_cmcd(play) | {
            "ot": cmcd.AUDIO,
            "bl": playback.buffer_s * 1000,
            "dl": playback.buffer_s * 1000 / speed,
            "bs": playback.stalls > play.stalls_told,
            "d": (segment.end_s - playback.buffered_to_s) * 1000,
            "mtp": self._estimate.kbps,
        }
        if following is not None:
            data["nrr"] = f"{following.first_byte}-{following.last_byte}"
        else:  # the last range of the track: next comes the next track's manifest
            data["nor"] = cmcd.relative_path(next_path, rendition.url)
        play.stalls_told = playback.stalls
        headers = {**self._settings.headers, "Range": segment.range_header}
        if near_end:
            headers[NEXT_TRACK_HEADER] = self._sign(next_path)
        return Fetch("range", self._url(rendition.url, data), headers, segment.length)

    def _session_cmcd(self, track_id: str) -> dict[str, cmcd.CmcdValue]:
        return {
            "cid": track_id,
            "pr": self._settings.speed,  # --speed is a playback rate
            "sf": "o",  # a streaming format of its own: a manifest and byte ranges
            "sid": self.session_id,
            "st": "v",
        }

    def _common_cmcd(self, play: _Play) -> dict[str, cmcd.CmcdValue]:
        return self._session_cmcd(play.track_id) | {
            "br": play.rendition.bitrate_kbps,
            "su": play.playback.waiting,  # startup, seek or stall: needed urgently
            "tb": play.ladder[-1].bitrate_kbps,
        }

    # -- bookkeeping -------------------------------------------------------------------------

    def _url(self, path: str, data: Mapping[str, cmcd.CmcdValue]) -> str:
        return cmcd.with_query_argument(self._sign(path), data)

    def _request(self, fetch: Fetch) -> Reply:
        reply = self._fetch(fetch)
        self._sink.request(fetch.kind, reply.ttfb_s, reply.failure)
        return reply

    def _failed(self, play: _Play, reply: Reply) -> bool:
        if reply.failure is None:
            play.failures_in_a_row = 0
            return False
        play.failures_in_a_row += 1
        return True

    def _after_failure(self, play: _Play) -> float:
        if play.failures_in_a_row >= GIVE_UP_AFTER:
            self._finish("failed")
        return RETRY_AFTER_S

    def _report(self, play: _Play) -> None:
        self._sink.progress(play.playback.take_progress())
        for event in play.playback.events:
            self._sink.quality(event.kind, event.seconds)
        play.playback.events.clear()

    def _finish(self, how: str) -> None:
        assert self.play is not None
        self.play.playback.close()
        self._report(self.play)
        self._sink.play_ended(how)
        self.play = None
