"""The QoE report from a known log: the summary's numbers, and real PNG plots (matplotlib, Agg)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from loadtests.qoe_log import QoeLog
from loadtests.qoe_report import PLOTS, summary, write_report

START = 1_800_000_000


def known_log() -> QoeLog:
    """60 s with 4 listeners at speed 10: 200 s of clock play, 2,000 s of audio, 10 s stalled."""
    log = QoeLog()
    log.startup_ms.update({100: 90, 200: 9, 2000: 1})
    for second in range(60):
        bucket = START + second
        log.listeners[bucket] = 4
        log.playing_s[bucket] = 200 / 60
        log.media_s[bucket] = {96: 500 / 60, 320: 1500 / 60}
        log.range_ttfb_ms[bucket] = Counter({5: 99, 80: 1})
    log.stalled_s[START + 30] = 10.0
    log.counts.update({"stall": 4, "switch_up": 6, "switch_down": 2, "requests_range": 6000})
    log.ttfb_ms["range"] = Counter({5: 5900, 80: 100})
    log.plays.update({"complete": 30, "skipped": 10})
    log.failures["range: HTTP 503 origin_circuit_open"] = 3
    return log


def test_the_summary_has_the_issues_numbers() -> None:
    report = summary(known_log(), speed=10.0)
    assert report["startup_s"] == {"count": 100, "mean": pytest.approx(0.128), "p50": 0.1,
                                   "p95": 0.2, "p99": 0.2}  # fmt: skip
    assert report["play_time_s"] == pytest.approx(200)
    assert report["audio_played_s"] == pytest.approx(2000)
    assert report["rebuffer_ratio"] == pytest.approx(10 / 200)
    assert report["stalls_per_hour"] == pytest.approx(4 / (2000 / 3600))  # per hour of audio
    assert report["switches_per_hour"] == pytest.approx(8 / (2000 / 3600))
    assert report["mean_bitrate_kbps"] == pytest.approx(0.25 * 96 + 0.75 * 320)
    assert report["bitrate_mix"] == {"96": pytest.approx(0.25), "320": pytest.approx(0.75)}
    assert report["listeners"] == {"max": 4, "mean": 4}
    assert report["plays"] == 40
    assert report["ttfb_s"]["range"]["p99"] == 0.08
    assert report["failures"] == {"range: HTTP 503 origin_circuit_open": 3}
    assert report["requests"] == {"range": 6000}
    assert report["started_at"] == "2027-01-15T08:00:00+00:00"


def test_the_report_is_json_and_four_pngs_beside_it(tmp_path: Path) -> None:
    path = tmp_path / "out" / "qoe.json"
    write_report(path, known_log(), speed=10.0)
    report = json.loads(path.read_text())
    assert report["rebuffer_ratio"] == pytest.approx(0.05)
    assert set(report["plots"]) == set(PLOTS)
    for name in report["plots"].values():
        png = (path.parent / name).read_bytes()
        assert png.startswith(b"\x89PNG\r\n\x1a\n")
        assert len(png) > 5000  # axes, lines and labels, not an empty canvas
    assert not list(path.parent.glob("*.tmp"))


def test_an_empty_run_still_writes_a_report(tmp_path: Path) -> None:
    path = tmp_path / "qoe.json"
    report = write_report(path, QoeLog(), speed=1.0)
    assert report["plays"] == 0
    assert report["rebuffer_ratio"] is None
    assert report["startup_s"]["p50"] is None
    assert all((tmp_path / name).is_file() for name in report["plots"].values())
