"""The player, step by step, over a simulated link on a clock the test moves (the real edge is
in test_locustfile): what it requests, with which CMCD and hints, and what it reports."""

from __future__ import annotations

import json
import random
from typing import Any
from urllib.parse import parse_qs, urlsplit

from loadtests.listener_behaviour import Habits, Popularity
from loadtests.listener_player import NEXT_TRACK_HEADER, Fetch, Player, PlayerSettings, Reply
from loadtests.qoe_log import QoeLog, QoeRecorder
from tests.support.clock import ManualClock

PAGE_S = 0.9
PAGES = 40  # a 36 s track
NEVER_SKIP = Habits(early_skip_share=0, late_skip_share=0, seek_share=0)


def view(track_id: str) -> dict[str, Any]:
    renditions = []
    for kbps in (96, 160, 320):
        page = int(kbps * 1000 / 8 * PAGE_S)
        points = [[round(i * PAGE_S, 3), 4000 + i * page] for i in range(PAGES)]
        renditions.append(
            {
                "name": str(kbps),
                "url": f"/v1/tracks/{track_id}/{kbps}",
                "codec": "vorbis",
                "bitrate_kbps": kbps,
                "size": 4000 + PAGES * page,
                "duration_s": PAGES * PAGE_S,
                "seek_table": {"header_bytes": 4000, "points": points},
            }
        )
    return {"track_id": track_id, "duration_s": PAGES * PAGE_S, "renditions": renditions}


class SimulatedLink:
    """Answers every request in full, taking latency plus size over bandwidth of clock time."""

    def __init__(self, clock: ManualClock, kbps: float, latency_s: float = 0.02) -> None:
        self.clock = clock
        self.kbps = kbps
        self.latency_s = latency_s
        self.sent: list[Fetch] = []

    def __call__(self, fetch: Fetch) -> Reply:
        self.sent.append(fetch)
        path = urlsplit(fetch.url).path
        body = json.dumps(view(path.split("/")[3])).encode() if fetch.kind == "manifest" else b""
        size = fetch.length if fetch.length is not None else len(body)
        seconds = self.latency_s + size * 8 / 1000 / self.kbps
        self.clock.advance(seconds)
        return Reply(size, self.latency_s, seconds, None, body)


def listen(player: Player, clock: ManualClock, seconds: float) -> None:
    end = clock() + seconds
    while clock() < end:
        clock.advance(player.step())


def make_player(
    clock: ManualClock, link: SimulatedLink, speed: float, habits: Habits = NEVER_SKIP
) -> tuple[Player, QoeLog, list[tuple[str, float]]]:
    log = QoeLog()
    measures: list[tuple[str, float]] = []
    recorder = QoeRecorder(log, epoch=clock, on_quality=lambda n, s: measures.append((n, s)))
    player = Player(
        transport=link,
        sink=recorder,
        popularity=Popularity(["t1", "t2"], 1.0),
        clock=clock,
        settings=PlayerSettings(speed=speed, habits=habits, headers={"X-Client-Region": "SE"}),
        sign=lambda path: f"{path}?sig=x",
        rng=random.Random(5),
    )
    return player, log, measures


def cmcd_of(fetch: Fetch) -> str:
    return parse_qs(urlsplit(fetch.url).query)["CMCD"][0]


def test_a_fast_link_plays_whole_tracks_at_the_top_rung_without_stalls() -> None:
    clock = ManualClock()
    link = SimulatedLink(clock, kbps=20_000)
    player, log, measures = make_player(clock, link, speed=4.0)
    listen(player, clock, 30)  # 120 s of audio: three tracks and more
    player.stop()
    assert log.plays["complete"] >= 3
    assert log.plays["stopped"] == 1
    assert log.counts["stall"] == 0
    assert [name for name, _ in measures].count("startup") == sum(log.plays.values())
    assert ("switch_up", 0.0) in measures
    played = {kbps: 0.0 for kbps in (96, 160, 320)}
    for per_bucket in log.media_s.values():
        for kbps, seconds in per_bucket.items():
            played[kbps] += seconds
    assert played[320] > 0.8 * sum(played.values())
    kinds = [fetch.kind for fetch in link.sent]
    assert kinds[:2] == ["manifest", "header"]
    assert "range" in kinds
    # Every request is signed, names the client region, and carries CMCD.
    assert all("?sig=x" in f.url and f.headers["X-Client-Region"] == "SE" for f in link.sent)
    first_range = next(f for f in link.sent if f.kind == "range")
    assert cmcd_of(first_range).startswith('bl=0,br=96,cid="t')
    assert ",ot=a," in cmcd_of(first_range)
    assert cmcd_of(first_range).endswith(",su,tb=320")


def test_ranges_are_paced_by_the_buffer_target_not_sent_back_to_back() -> None:
    clock = ManualClock()
    link = SimulatedLink(clock, kbps=20_000)
    player, _, _ = make_player(clock, link, speed=1.0)
    listen(player, clock, 1)
    early = sum(f.kind == "range" for f in link.sent)
    listen(player, clock, 18)
    later = sum(f.kind == "range" for f in link.sent) - early
    assert early == 3  # the 12 s target in ranges of 4.5 s (whole 0.9 s pages)
    assert 3 <= later <= 5  # then about one range per 4.5 s played


def test_a_link_too_slow_for_the_speed_stalls_goes_down_and_says_so() -> None:
    clock = ManualClock()
    link = SimulatedLink(clock, kbps=1_000, latency_s=0.1)  # 96 kbps at 16x needs 1.5 Mbit/s
    player, log, measures = make_player(clock, link, speed=16.0)
    listen(player, clock, 20)
    player.stop()
    assert log.counts["stall"] > 0
    assert sum(log.stalled_s.values()) > 0
    assert not any(name == "switch_up" for name, _ in measures)
    stalls = [seconds for name, seconds in measures if name == "stall"]
    assert len(stalls) == log.counts["stall"]
    assert all(s > 0 for s in stalls)
    starved = [f for f in link.sent if f.kind == "range" and cmcd_of(f).split(",")[2] == "bs"]
    assert starved, "no range request said the buffer had run dry (CMCD bs)"


def test_the_next_track_is_hinted_near_the_end_and_played_next() -> None:
    clock = ManualClock()
    link = SimulatedLink(clock, kbps=20_000)
    player, _, _ = make_player(clock, link, speed=4.0)
    listen(player, clock, 12)  # past the end of the first track
    manifests = [f for f in link.sent if f.kind == "manifest"]
    assert len(manifests) >= 2
    second = urlsplit(manifests[1].url).path
    hinted = [f for f in link.sent if NEXT_TRACK_HEADER in f.headers]
    assert hinted, "no next-track hint sent"
    assert {f.headers[NEXT_TRACK_HEADER] for f in hinted[:1]} == {f"{second}?sig=x"}
    before_second = next(i for i, f in enumerate(link.sent) if f is manifests[1])
    first_hint = next(i for i, f in enumerate(link.sent) if f is hinted[0])
    assert first_hint < before_second
    assert "nor=" in cmcd_of(link.sent[before_second - 1])  # the last range names what is next


def test_skips_and_seeks_are_played_out() -> None:
    clock = ManualClock()
    link = SimulatedLink(clock, kbps=20_000)
    habits = Habits(early_skip_share=0.5, late_skip_share=0.0, seek_share=1.0)
    player, log, measures = make_player(clock, link, speed=8.0, habits=habits)
    listen(player, clock, 60)
    assert log.plays["skipped"] > 0
    assert log.plays["complete"] > 0
    assert sum(log.seek_ms.values()) > 0
    assert any(name == "seek" for name, _ in measures)


def test_failed_manifests_end_the_play_and_are_counted_by_kind() -> None:
    clock = ManualClock()

    def refusing(fetch: Fetch) -> Reply:
        clock.advance(0.01)
        return Reply(80, 0.01, 0.01, "HTTP 451 not_licensed")

    log = QoeLog()
    player = Player(
        transport=refusing,
        sink=QoeRecorder(log, epoch=clock),
        popularity=Popularity(["t1"], 1.0),
        clock=clock,
    )
    assert player.step() > 0  # waits before trying another track
    player.step()
    assert log.plays == {"failed": 2}
    assert log.failures == {"manifest: HTTP 451 not_licensed": 2}
