"""The hot path's plain counts: folded into prometheus-client, they expose exactly what
counting each request there would have (the histogram's fold uses its private values, so this
pins them); and nothing is lost or counted twice across folds."""

from __future__ import annotations

import random

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from edge.telemetry import metrics

BUCKETS = (0.001, 0.01, 0.1, 1.0)


def _pair(kind: str) -> tuple[CollectorRegistry, CollectorRegistry, object, object]:
    direct, folded = CollectorRegistry(), CollectorRegistry()
    if kind == "counter":
        return (
            direct,
            folded,
            Counter("t_total", "t", ["a"], registry=direct),
            Counter("t_total", "t", ["a"], registry=folded),
        )
    return (
        direct,
        folded,
        Histogram("t_seconds", "t", ["a"], buckets=BUCKETS, registry=direct),
        Histogram("t_seconds", "t", ["a"], buckets=BUCKETS, registry=folded),
    )


def _exposition(registry: CollectorRegistry) -> list[str]:
    return [
        line for line in generate_latest(registry).decode().splitlines() if "_created" not in line
    ]


def test_a_folded_counter_exposes_what_direct_counting_does() -> None:
    direct_registry, folded_registry, direct, folded = _pair("counter")
    assert isinstance(direct, Counter)
    assert isinstance(folded, Counter)
    series = metrics.counted(folded)
    rng = random.Random(7)
    for round_ in range(3):
        for _ in range(200):
            label, amount = rng.choice("xyz"), rng.choice((1, 2, 65536))
            direct.labels(label).inc(amount)
            series(label).inc(amount)
        metrics.fold()
        assert _exposition(folded_registry) == _exposition(direct_registry), round_
    metrics.fold()  # nothing pending: nothing changes
    assert _exposition(folded_registry) == _exposition(direct_registry)


def _split_sums(lines: list[str]) -> tuple[list[str], list[float]]:
    """The lines without the ``_sum`` samples, and those sums (added up in another order,
    they may differ in the last bits)."""
    sums = [float(line.rsplit(" ", 1)[1]) for line in lines if "_sum{" in line]
    return [line for line in lines if "_sum{" not in line], sums


def test_a_folded_histogram_exposes_what_direct_observing_does() -> None:
    direct_registry, folded_registry, direct, folded = _pair("histogram")
    assert isinstance(direct, Histogram)
    assert isinstance(folded, Histogram)
    series = metrics.observed(folded)
    rng = random.Random(11)
    values = [0.0, 0.001, 0.0010001, 0.01, 1.0, 7.5]  # bounds themselves, and past the last
    for round_ in range(3):
        for _ in range(300):
            label = rng.choice("ab")
            value = rng.choice(values) if rng.random() < 0.3 else rng.uniform(0, 2)
            direct.labels(label).observe(value)
            series(label).observe(value)
        metrics.fold()
        folded_lines, folded_sums = _split_sums(_exposition(folded_registry))
        direct_lines, direct_sums = _split_sums(_exposition(direct_registry))
        assert folded_lines == direct_lines, round_
        assert folded_sums == pytest.approx(direct_sums), round_
