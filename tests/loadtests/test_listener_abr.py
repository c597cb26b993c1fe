"""Bitrate choice: a conservative start, an immediate down-switch on a slow segment, up-switches
one rung at a time after the throughput has held, and the speed multiplier's cost."""

from __future__ import annotations

import pytest

from loadtests.listener_abr import Abr, AbrRules, ThroughputEstimate

LADDER = [96, 160, 320]
RULES = AbrRules(safety=0.7, up_margin=1.2, up_after=2, slow_share=0.8, up_min_buffer_s=4.0)
SEGMENT_S = 4.0


def download(abr: Abr, kbps: float, buffer_s: float = 10.0, media_s: float = SEGMENT_S) -> int:
    """Feed one segment of ``media_s`` at the current rung, downloaded at ``kbps``."""
    size = int(abr.ladder_kbps[abr.index] * 1000 / 8 * media_s)
    return abr.on_segment(size, size * 8 / 1000 / kbps, media_s, buffer_s)


def test_the_estimate_believes_a_drop_at_once_and_a_rise_slowly() -> None:
    estimate = ThroughputEstimate()
    assert estimate.kbps is None
    estimate.add(1000)
    assert estimate.kbps == pytest.approx(1000)
    estimate.add(100)
    dropped = estimate.kbps
    assert dropped is not None
    assert dropped < 600
    for _ in range(2):
        estimate.add(1000)
    risen = estimate.kbps
    assert risen is not None
    assert dropped < risen < 900


def test_a_first_play_starts_at_the_lowest_rung_and_a_later_one_from_the_estimate() -> None:
    estimate = ThroughputEstimate()
    assert Abr(LADDER, speed=1.0, estimate=estimate, rules=RULES).index == 0
    estimate.add(300)  # 210 usable: carries 160, not 320
    assert Abr(LADDER, speed=1.0, estimate=estimate, rules=RULES).index == 1


def test_up_switches_wait_for_the_throughput_to_hold_and_go_one_rung_at_a_time() -> None:
    abr = Abr(LADDER, speed=1.0, estimate=ThroughputEstimate(), rules=RULES)
    assert download(abr, 10_000) == 0  # one good segment is not enough
    assert download(abr, 10_000) == 1
    assert abr.index == 1
    assert download(abr, 10_000, buffer_s=2.0) == 0  # too little buffered to risk it
    assert download(abr, 10_000) == 0
    assert download(abr, 10_000) == 1
    assert abr.index == 2
    assert download(abr, 10_000) == 0  # the top


def test_a_slow_segment_goes_down_at_once() -> None:
    abr = Abr(LADDER, speed=1.0, estimate=ThroughputEstimate(), rules=RULES)
    for _ in range(4):
        download(abr, 10_000)
    assert abr.index == 2
    # 320 kbps downloaded at 350 kbps takes 91% of its play time: slow.
    assert download(abr, 350) == -1
    assert abr.index == 1


def test_a_falling_estimate_goes_down_to_the_rung_it_carries() -> None:
    estimate = ThroughputEstimate()
    abr = Abr(LADDER, speed=1.0, estimate=estimate, rules=RULES)
    for _ in range(4):
        download(abr, 10_000)
    # Each segment fast enough (not slow), but the estimate sinks below 320 / 0.7 kbps.
    switches = [download(abr, 430) for _ in range(20)]
    assert switches.count(-1) == 1
    assert abr.index == 1


def test_speed_multiplies_what_a_rung_costs() -> None:
    fast = Abr(LADDER, speed=1.0, estimate=ThroughputEstimate(), rules=RULES)
    sped_up = Abr(LADDER, speed=16.0, estimate=ThroughputEstimate(), rules=RULES)
    for abr in (fast, sped_up):
        for _ in range(6):
            download(abr, 2_000)
    assert fast.index == 2  # 2 Mbit/s carries 320 kbps easily
    assert sped_up.index == 0  # but not 16 listeners' worth of 160 kbps
