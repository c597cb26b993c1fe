"""The QoE report of a load test: a JSON summary and four PNG plots next to it.

Times are clock seconds (what the network did), amounts of audio are media seconds, and the
per-hour rates are per hour of audio played: with ``--speed 20`` an hour of audio plays in
three minutes, so a short run stands for a long one (and asks 20x the throughput of each
listener). The rebuffer ratio is stall time over play time, both in clock seconds.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from loadtests.qoe_log import SECONDS_PER_HOUR, QoeLog, percentile

PLOTS = ("listeners", "ttfb", "stalls", "bitrate")
MAX_POINTS = 120  # time series are grouped into at most this many windows


def _seconds(histogram: Counter[int]) -> dict[str, float | int | None]:
    def at(share: float) -> float | None:
        value = percentile(histogram, share)
        return None if value is None else value / 1000

    count = sum(histogram.values())
    mean = sum(ms * n for ms, n in histogram.items()) / count / 1000 if count else None
    return {"count": count, "mean": mean, "p50": at(0.5), "p95": at(0.95), "p99": at(0.99)}


def _per_hour(count: int, audio_s: float) -> float | None:
    return count / (audio_s / SECONDS_PER_HOUR) if audio_s > 0 else None


def summary(log: QoeLog, *, speed: float) -> dict[str, Any]:
    """The report's numbers (see the module docstring for their units)."""
    playing_s = sum(log.playing_s.values())
    stalled_s = sum(log.stalled_s.values())
    by_kbps: Counter[int] = Counter()
    for per_bucket in log.media_s.values():
        by_kbps.update(per_bucket)
    audio_s = sum(by_kbps.values())
    buckets = sorted(set(log.playing_s) | set(log.listeners) | set(log.range_ttfb_ms))
    listeners = list(log.listeners.values())
    stalls = log.counts["stall"]
    switches = log.counts["switch_up"] + log.counts["switch_down"]
    return {
        "speed": speed,
        "started_at": _iso(buckets[0]) if buckets else None,
        "ended_at": _iso(buckets[-1] + 1) if buckets else None,
        "listeners": {
            "max": max(listeners, default=0),
            "mean": sum(listeners) / len(listeners) if listeners else 0,
        },
        "plays": sum(log.plays.values()),
        "plays_by_end": dict(sorted(log.plays.items())),
        "play_time_s": playing_s,
        "audio_played_s": audio_s,
        "startup_s": _seconds(log.startup_ms),
        "seek_startup_s": _seconds(log.seek_ms),
        "ttfb_s": {kind: _seconds(h) for kind, h in sorted(log.ttfb_ms.items())},
        "stalls": stalls,
        "stall_time_s": stalled_s,
        "rebuffer_ratio": stalled_s / playing_s if playing_s else None,
        "stalls_per_hour": _per_hour(stalls, audio_s),
        "mean_bitrate_kbps": (
            sum(kbps * s for kbps, s in by_kbps.items()) / audio_s if audio_s else None
        ),
        "bitrate_mix": {str(kbps): s / audio_s for kbps, s in sorted(by_kbps.items())},
        "switches": {"up": log.counts["switch_up"], "down": log.counts["switch_down"]},
        "switches_per_hour": _per_hour(switches, audio_s),
        "requests": {
            key.removeprefix("requests_"): n
            for key, n in sorted(log.counts.items())
            if key.startswith("requests_")
        },
        "failures": dict(log.failures.most_common()),
    }


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")


def write_report(path: Path, log: QoeLog, *, speed: float) -> dict[str, Any]:
    """Write the JSON summary to ``path`` and the plots beside it (``<stem>-<plot>.png``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    report = summary(log, speed=speed)
    plots = {name: path.with_name(f"{path.stem}-{name}.png") for name in PLOTS}
    _plot_all(log, plots)
    report["plots"] = {name: plot.name for name, plot in plots.items()}
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(report, indent=2) + "\n")
    temporary.replace(path)  # a reader never sees half a report
    return report


# -- plots ---------------------------------------------------------------------------------


class _Windows:
    """Groups whole-second buckets into windows of ``size`` seconds, from the first bucket."""

    def __init__(self, log: QoeLog) -> None:
        buckets = set(log.playing_s) | set(log.listeners) | set(log.range_ttfb_ms)
        buckets |= set(log.stalled_s) | set(log.media_s)
        self.start = min(buckets, default=0)
        span = max(buckets, default=0) - self.start + 1
        self.size = max(1, math.ceil(span / MAX_POINTS))
        self.count = math.ceil(span / self.size)

    def of(self, bucket: int) -> int:
        return (bucket - self.start) // self.size

    def times(self) -> list[float]:
        return [i * self.size for i in range(self.count)]


def _new_axes(title: str, ylabel: str) -> tuple[Figure, Axes]:
    figure = Figure(figsize=(8, 3.6), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.set_title(title)
    axes.set_xlabel("seconds since start")
    axes.set_ylabel(ylabel)
    axes.grid(alpha=0.3)
    return figure, axes


def _plot_listeners(log: QoeLog, windows: _Windows, axes: Axes) -> None:
    points = sorted(log.listeners.items())
    axes.step([b - windows.start for b, _ in points], [n for _, n in points], where="post")


def _plot_ttfb(log: QoeLog, windows: _Windows, axes: Axes) -> None:
    grouped: dict[int, Counter[int]] = {}
    for bucket, histogram in log.range_ttfb_ms.items():
        grouped.setdefault(windows.of(bucket), Counter()).update(histogram)
    keys = sorted(grouped)
    times = [k * windows.size for k in keys]
    for share, label in ((0.5, "p50"), (0.99, "p99")):
        values = [percentile(grouped[k], share) or 0.0 for k in keys]  # windows hold samples
        axes.plot(times, values, marker=".", label=label)
    axes.legend()


def _plot_stalls(log: QoeLog, windows: _Windows, axes: Axes) -> None:
    playing = [0.0] * windows.count
    stalled = [0.0] * windows.count
    for bucket, seconds in log.playing_s.items():
        playing[windows.of(bucket)] += seconds
    for bucket, seconds in log.stalled_s.items():
        stalled[windows.of(bucket)] += seconds
    ratio = [100 * s / p if p else math.nan for s, p in zip(stalled, playing, strict=True)]
    axes.plot(windows.times(), ratio, marker=".")
    axes.set_ylim(bottom=0)


def _plot_bitrate(log: QoeLog, windows: _Windows, axes: Axes) -> None:
    rates = sorted({kbps for per_bucket in log.media_s.values() for kbps in per_bucket})
    seconds = {kbps: [0.0] * windows.count for kbps in rates}
    for bucket, per_bucket in log.media_s.items():
        for kbps, s in per_bucket.items():
            seconds[kbps][windows.of(bucket)] += s
    totals = [sum(seconds[kbps][i] for kbps in rates) for i in range(windows.count)]
    shares: Sequence[list[float]] = [
        [100 * s / t if t else 0.0 for s, t in zip(seconds[kbps], totals, strict=True)]
        for kbps in rates
    ]
    if rates:
        labels = [f"{kbps} kbps" for kbps in rates]
        axes.stackplot(windows.times(), *shares, labels=labels, step="post")
        axes.legend(loc="lower left")
    axes.set_ylim(0, 100)


_PLOTTERS: dict[str, tuple[str, str, Callable[[QoeLog, _Windows, Axes], None]]] = {
    "listeners": ("Listeners", "users", _plot_listeners),
    "ttfb": ("Range TTFB", "ms", _plot_ttfb),
    "stalls": ("Stall ratio (stall time / play time)", "%", _plot_stalls),
    "bitrate": ("Bitrate mix (share of audio played)", "%", _plot_bitrate),
}


def _plot_all(log: QoeLog, paths: dict[str, Path]) -> None:
    windows = _Windows(log)
    for name, path in paths.items():
        title, ylabel, plot = _PLOTTERS[name]
        figure, axes = _new_axes(title, ylabel)
        plot(log, windows, axes)
        figure.savefig(path, dpi=100)
