"""Quality-of-experience samples of a load test, kept so they can be merged: histograms of
rounded milliseconds and per-second sums, not one record per request. A Locust worker sends
what it gathered to the master as :meth:`QoeLog.to_doc` (plain JSON types), the master merges
it with :meth:`QoeLog.absorb`, and :func:`summary` turns the whole into the report's numbers.
"""

from __future__ import annotations

import copy
import math
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from loadtests.listener_model import Progress

SECONDS_PER_HOUR = 3600.0


def round_ms(seconds: float) -> int:
    """Milliseconds to 2-3 significant digits, as Locust rounds response times: the error
    stays under 1%, and a histogram of a long run stays small."""
    ms = seconds * 1000
    if ms < 100:
        return round(ms)
    if ms < 1000:
        return round(ms / 10) * 10
    return round(ms / 100) * 100


def percentile(histogram: Mapping[int, int], share: float) -> float | None:
    """The value (ms) at ``share`` (0-1) of a histogram of rounded milliseconds."""
    total = sum(histogram.values())
    if not total:
        return None
    rank = max(1, math.ceil(share * total))
    seen = 0
    for value in sorted(histogram):
        seen += histogram[value]
        if seen >= rank:
            return float(value)
    raise AssertionError("unreachable")


def _add_into(into: dict[int, float], bucket: int, value: float) -> None:
    into[bucket] = into.get(bucket, 0.0) + value


@dataclass
class QoeLog:
    """Everything the report needs. Time buckets are whole unix seconds."""

    startup_ms: Counter[int] = field(default_factory=Counter)
    seek_ms: Counter[int] = field(default_factory=Counter)
    ttfb_ms: dict[str, Counter[int]] = field(default_factory=dict)  # by request kind
    range_ttfb_ms: dict[int, Counter[int]] = field(default_factory=dict)  # by bucket
    playing_s: dict[int, float] = field(default_factory=dict)  # clock seconds, by bucket
    stalled_s: dict[int, float] = field(default_factory=dict)
    media_s: dict[int, dict[int, float]] = field(default_factory=dict)  # bucket -> kbps -> s
    listeners: dict[int, int] = field(default_factory=dict)  # sampled where the report is made
    counts: Counter[str] = field(default_factory=Counter)  # stalls, switches, requests by kind
    plays: Counter[str] = field(default_factory=Counter)  # by how they ended
    failures: Counter[str] = field(default_factory=Counter)  # "kind: reason"

    def is_empty(self) -> bool:
        return not any(vars(self).values())

    def take(self) -> QoeLog:
        """Hand over what was gathered and start empty (a worker's report to the master)."""
        taken = copy.copy(self)
        for name, empty in vars(QoeLog()).items():
            setattr(self, name, empty)
        return taken

    def absorb(self, other: QoeLog) -> None:
        self.startup_ms.update(other.startup_ms)
        self.seek_ms.update(other.seek_ms)
        for kind, histogram in other.ttfb_ms.items():
            self.ttfb_ms.setdefault(kind, Counter()).update(histogram)
        for bucket, histogram in other.range_ttfb_ms.items():
            self.range_ttfb_ms.setdefault(bucket, Counter()).update(histogram)
        for bucket, seconds in other.playing_s.items():
            _add_into(self.playing_s, bucket, seconds)
        for bucket, seconds in other.stalled_s.items():
            _add_into(self.stalled_s, bucket, seconds)
        for bucket, by_kbps in other.media_s.items():
            mine = self.media_s.setdefault(bucket, {})
            for kbps, seconds in by_kbps.items():
                _add_into(mine, kbps, seconds)
        for bucket, count in other.listeners.items():
            self.listeners[bucket] = self.listeners.get(bucket, 0) + count
        self.counts.update(other.counts)
        self.plays.update(other.plays)
        self.failures.update(other.failures)

    def to_doc(self) -> dict[str, Any]:
        """Plain JSON (and msgpack) types: string keys, lists of pairs for int-keyed maps."""

        def pairs(mapping: Mapping[int, Any]) -> list[list[Any]]:
            return [[key, value] for key, value in sorted(mapping.items())]

        return {
            "startup_ms": pairs(self.startup_ms),
            "seek_ms": pairs(self.seek_ms),
            "ttfb_ms": {kind: pairs(h) for kind, h in self.ttfb_ms.items()},
            "range_ttfb_ms": [[b, pairs(h)] for b, h in sorted(self.range_ttfb_ms.items())],
            "playing_s": pairs(self.playing_s),
            "stalled_s": pairs(self.stalled_s),
            "media_s": [[b, pairs(by_kbps)] for b, by_kbps in sorted(self.media_s.items())],
            "listeners": pairs(self.listeners),
            "counts": dict(self.counts),
            "plays": dict(self.plays),
            "failures": dict(self.failures),
        }

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> QoeLog:
        def counter(items: Iterable[list[Any]]) -> Counter[int]:
            return Counter({int(k): int(v) for k, v in items})

        def floats(items: Iterable[list[Any]]) -> dict[int, float]:
            return {int(k): float(v) for k, v in items}

        return cls(
            startup_ms=counter(doc["startup_ms"]),
            seek_ms=counter(doc["seek_ms"]),
            ttfb_ms={kind: counter(h) for kind, h in doc["ttfb_ms"].items()},
            range_ttfb_ms={int(b): counter(h) for b, h in doc["range_ttfb_ms"]},
            playing_s=floats(doc["playing_s"]),
            stalled_s=floats(doc["stalled_s"]),
            media_s={int(b): {int(k): float(s) for k, s in m} for b, m in doc["media_s"]},
            listeners={int(b): int(n) for b, n in doc["listeners"]},
            counts=Counter(doc["counts"]),
            plays=Counter(doc["plays"]),
            failures=Counter(doc["failures"]),
        )


class QoeRecorder:
    """What the listeners of one process tell the log (see ``listener_player.QoeSink``).
    ``on_quality`` also sees each quality measure (the locustfile reports them to Locust)."""

    def __init__(
        self,
        log: QoeLog,
        *,
        epoch: Callable[[], float] = time.time,
        on_quality: Callable[[str, float], None] = lambda _name, _seconds: None,
    ) -> None:
        self.log = log
        self._epoch = epoch
        self._on_quality = on_quality

    def _bucket(self) -> int:
        return int(self._epoch())

    def quality(self, name: str, seconds: float) -> None:
        if name == "startup":
            self.log.startup_ms[round_ms(seconds)] += 1
        elif name == "seek":
            self.log.seek_ms[round_ms(seconds)] += 1
        else:
            self.log.counts[name] += 1
        self._on_quality(name, seconds)

    def request(self, kind: str, ttfb_s: float | None, failure: str | None) -> None:
        self.log.counts[f"requests_{kind}"] += 1
        if failure is not None:
            self.log.failures[f"{kind}: {failure}"] += 1
        elif ttfb_s is not None:
            self.log.ttfb_ms.setdefault(kind, Counter())[round_ms(ttfb_s)] += 1
            if kind == "range":
                histogram = self.log.range_ttfb_ms.setdefault(self._bucket(), Counter())
                histogram[round_ms(ttfb_s)] += 1

    def progress(self, progress: Progress) -> None:
        bucket = self._bucket()
        if progress.playing_s:
            _add_into(self.log.playing_s, bucket, progress.playing_s)
        if progress.stalled_s:
            _add_into(self.log.stalled_s, bucket, progress.stalled_s)
        if progress.media_s_by_kbps:
            by_kbps = self.log.media_s.setdefault(bucket, {})
            for kbps, seconds in progress.media_s_by_kbps.items():
                _add_into(by_kbps, kbps, seconds)

    def play_ended(self, how: str) -> None:
        self.log.plays[how] += 1

    def listeners(self, count: int) -> None:
        self.log.listeners[self._bucket()] = count
