"""The playback model on a clock the tests move: startup, playing at speed, stalls, the end,
seeks, what was played at which bitrate; and the segments cut from a seek table."""

from __future__ import annotations

import math
from typing import Any

import pytest

from loadtests.listener_model import (
    BufferRules,
    Playback,
    Rendition,
    State,
    choose_ladder,
    segment_from,
)
from tests.support.clock import ManualClock

RULES = BufferRules(startup_s=2.0, resume_s=1.0, target_s=8.0)


def playback(clock: ManualClock, *, speed: float = 1.0, end_s: float = 60.0) -> Playback:
    return Playback(clock=clock, speed=speed, end_s=end_s, rules=RULES)


def state(play: Playback) -> State:
    """The state now (a call, so a type checker does not carry an earlier check forward)."""
    return play.state


def waits(play: Playback) -> list[tuple[str, float]]:
    """The waits the listener noticed, to the microsecond."""
    return [(event.kind, round(event.seconds, 6)) for event in play.events]


def test_startup_waits_for_the_threshold_and_counts_from_the_press_of_play() -> None:
    clock = ManualClock()
    asked_at = clock()
    clock.advance(0.1)  # the manifest
    play = Playback(clock=clock, speed=1.0, end_s=60.0, rules=RULES, asked_at=asked_at)
    play.add(1.5, 96)
    assert state(play) is State.STARTING
    assert play.wants_data()
    clock.advance(0.2)
    play.add(1.5, 96)
    assert state(play) is State.PLAYING
    assert waits(play) == [("startup", 0.3)]
    assert play.position_s == 0.0  # nothing heard yet


def test_media_time_runs_at_speed_while_clock_time_is_counted_as_played() -> None:
    clock = ManualClock()
    play = playback(clock, speed=4.0)
    play.add(20.0, 160)
    clock.advance(2.0)
    play.advance()
    assert play.position_s == pytest.approx(8.0)
    assert play.buffer_s == pytest.approx(12.0)
    progress = play.take_progress()
    assert progress.playing_s == pytest.approx(2.0)
    assert progress.media_s_by_kbps == {160: pytest.approx(8.0)}
    assert play.take_progress().playing_s == 0  # taken means counted once


def test_a_dry_buffer_stalls_at_the_moment_it_ran_out_and_resumes_at_its_threshold() -> None:
    clock = ManualClock()
    play = playback(clock, speed=2.0)
    play.add(3.0, 96)  # 1.5 s of clock time at speed 2
    clock.advance(4.0)
    play.advance()
    assert state(play) is State.STALLED
    assert play.stalls == 1
    assert play.position_s == pytest.approx(3.0)
    progress = play.take_progress()
    assert progress.playing_s == pytest.approx(1.5)
    assert progress.stalled_s == pytest.approx(2.5)
    clock.advance(1.0)
    play.add(0.5, 96)
    assert state(play) is State.STALLED  # below resume_s
    play.add(0.5, 96)
    assert state(play) is State.PLAYING
    assert waits(play) == [("startup", 0.0), ("stall", 3.5)]
    assert play.take_progress().stalled_s == pytest.approx(1.0)


def test_running_out_at_the_end_is_the_end_not_a_stall() -> None:
    clock = ManualClock()
    play = playback(clock, end_s=10.0)
    play.add(6.0, 96)
    play.add(6.0, 96)  # clipped to the end
    assert play.complete
    assert play.buffered_to_s == 10.0
    assert not play.wants_data()
    assert play.seconds_until_below_target() == pytest.approx(10.0)
    clock.advance(11.0)
    play.advance()
    assert state(play) is State.ENDED
    assert play.stalls == 0
    assert play.take_progress().playing_s == pytest.approx(10.0)


def test_fetching_stops_at_the_target_and_resumes_below_it() -> None:
    clock = ManualClock()
    play = playback(clock, speed=2.0)
    play.add(10.0, 96)
    assert not play.wants_data()
    assert play.seconds_until_below_target() == pytest.approx(1.0)  # 2 s of audio at 2x
    clock.advance(0.99)
    play.advance()
    assert not play.wants_data()
    clock.advance(0.01)
    play.advance()
    assert play.wants_data()


def test_a_seek_drops_the_buffer_and_waits_as_a_startup_does() -> None:
    clock = ManualClock()
    play = playback(clock)
    play.add(8.0, 320)
    clock.advance(1.0)
    play.events.clear()
    play.seek(30.0)
    assert (play.state, play.position_s, play.buffer_s) == (State.STARTING, 30.0, 0.0)
    assert math.isinf(play.seconds_until(40.0))
    clock.advance(0.25)
    play.add(4.0, 320)
    assert waits(play) == [("seek", 0.25)]
    assert play.stalls == 0


def test_audio_played_is_counted_at_the_bitrate_of_each_segment_as_the_head_passes() -> None:
    clock = ManualClock()
    play = playback(clock)
    play.add(2.0, 96)
    play.add(4.0, 160)
    clock.advance(3.0)
    assert play.take_progress().media_s_by_kbps == {96: pytest.approx(2.0), 160: 1.0}
    clock.advance(10.0)
    progress = play.take_progress()
    assert progress.media_s_by_kbps == {160: pytest.approx(3.0)}


def test_closing_mid_stall_reports_the_stall_as_it_stands() -> None:
    clock = ManualClock()
    play = playback(clock)
    play.add(2.0, 96)
    clock.advance(5.0)
    play.close()
    assert waits(play)[-1] == ("stall", 3.0)
    assert state(play) is State.ENDED


def rendition_doc(name: str = "160", kbps: int = 160, codec: str = "vorbis") -> dict[str, Any]:
    points = [[round(i * 0.9, 3), 4000 + i * 18_000] for i in range(12)]  # pages of 0.9 s
    return {
        "name": name,
        "url": f"/v1/tracks/t1/{name}",
        "codec": codec,
        "bitrate_kbps": kbps,
        "size": 4000 + 12 * 18_000,
        "duration_s": 10.8,
        "seek_table": {"header_bytes": 4000, "points": points},
    }


def test_segments_run_from_a_seek_point_to_the_first_point_the_target_later() -> None:
    rendition = Rendition.from_view(rendition_doc())
    first = segment_from(rendition, 0.0, target_s=4.0)
    assert first is not None
    # Points at 0, 0.9, ... 4.5: the first at least 4 s after 0 is 4.5 (index 5).
    assert (first.first_byte, first.last_byte, first.end_s) == (4000, 4000 + 5 * 18_000 - 1, 4.5)
    assert first.range_header == f"bytes=4000-{4000 + 5 * 18_000 - 1}"
    following = segment_from(rendition, first.end_s, target_s=4.0)
    assert following is not None
    assert following.first_byte == first.last_byte + 1
    # From between two points (a switch of rendition): from the point before.
    middle = segment_from(rendition, 2.0, target_s=4.0)
    assert middle is not None
    assert middle.first_byte == 4000 + 2 * 18_000
    last = segment_from(rendition, 9.0, target_s=4.0)
    assert last is not None
    assert (last.last_byte, last.end_s) == (rendition.size - 1, 10.8)
    assert segment_from(rendition, 10.8, target_s=4.0) is None


def test_the_ladder_is_one_codec_lowest_bitrate_first() -> None:
    view = {
        "renditions": [
            rendition_doc("64", 64, "opus"),
            rendition_doc("320", 320),
            rendition_doc("96", 96),
            rendition_doc("160", 160),
        ]
    }
    assert [r.name for r in choose_ladder(view)] == ["96", "160", "320"]
    with pytest.raises(ValueError, match="no renditions"):
        choose_ladder({"renditions": []})
