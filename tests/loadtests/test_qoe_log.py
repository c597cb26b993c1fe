"""QoE samples: rounding, percentiles, and logs that merge across workers through plain JSON."""

from __future__ import annotations

import json
from collections import Counter

from loadtests.listener_model import Progress
from loadtests.qoe_log import QoeLog, QoeRecorder, percentile, round_ms
from tests.support.clock import ManualClock


def test_milliseconds_are_rounded_as_locust_rounds_them() -> None:
    assert [round_ms(s) for s in (0.0014, 0.0996, 0.1234, 0.9999, 1.2345, 12.34)] == [
        1, 100, 120, 1000, 1200, 12300,
    ]  # fmt: skip


def test_percentiles_of_a_histogram() -> None:
    histogram = Counter({10: 50, 20: 45, 500: 5})
    assert percentile(histogram, 0.5) == 10
    assert percentile(histogram, 0.95) == 20
    assert percentile(histogram, 0.99) == 500
    assert percentile(Counter(), 0.5) is None


def recorded(clock: ManualClock) -> QoeLog:
    log = QoeLog()
    recorder = QoeRecorder(log, epoch=clock)
    recorder.quality("startup", 0.25)
    recorder.quality("stall", 1.5)
    recorder.quality("switch_up", 0.0)
    recorder.request("range", 0.004, None)
    recorder.request("range", 0.5, "HTTP 503 origin_circuit_open")
    recorder.progress(Progress(playing_s=2.0, stalled_s=0.5, media_s_by_kbps={160: 16.0}))
    clock.advance(1.0)
    recorder.progress(Progress(playing_s=1.0, media_s_by_kbps={320: 8.0}))
    recorder.play_ended("complete")
    recorder.listeners(3)
    return log


def test_the_recorder_files_samples_by_kind_and_second() -> None:
    clock = ManualClock(1700000000.2)
    log = recorded(clock)
    assert log.startup_ms == {250: 1}
    assert log.counts == {"stall": 1, "switch_up": 1, "requests_range": 2}
    assert log.failures == {"range: HTTP 503 origin_circuit_open": 1}
    assert log.ttfb_ms == {"range": {4: 1}}  # a failed request has no TTFB sample
    assert log.range_ttfb_ms == {1700000000: {4: 1}}
    assert log.playing_s == {1700000000: 2.0, 1700000001: 1.0}
    assert log.media_s == {1700000000: {160: 16.0}, 1700000001: {320: 8.0}}
    assert log.listeners == {1700000001: 3}


def test_a_log_survives_json_and_merges_with_another() -> None:
    worker_a, worker_b = recorded(ManualClock(1700000000.0)), recorded(ManualClock(1700000000.0))
    master = QoeLog()
    for worker in (worker_a, worker_b):
        master.absorb(QoeLog.from_doc(json.loads(json.dumps(worker.take().to_doc()))))
    assert worker_a.is_empty()
    assert worker_b.is_empty()
    assert master.startup_ms == {250: 2}
    assert master.counts["stall"] == 2
    assert master.playing_s == {1700000000: 4.0, 1700000001: 2.0}
    assert master.media_s == {1700000000: {160: 32.0}, 1700000001: {320: 16.0}}
    assert master.plays == {"complete": 2}
    assert master.failures == {"range: HTTP 503 origin_circuit_open": 2}
    assert not master.is_empty()
