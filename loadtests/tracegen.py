"""Synthetic audio request traces, in the ``encore-edge simulate`` trace format.

A play is one request line: ``timestamp key size 0 length``, where the key names one
rendition of one track (``t123/160``), the size is that rendition's real bitrate x duration,
and the length is how much of it the listener played. Workloads:

- ``zipf``: track popularity is Zipf(alpha) over a catalogue that churns: every day new
  releases enter near the top and push older tracks down. A share of plays go to tracks
  played exactly once (one-hit wonders: deep-catalogue curiosities, previews).
- ``recency``: listeners replay what they played recently (an LRU stack model: most plays
  come back after a short stack distance) and popularity shifts quickly; few one-hit
  wonders. The workload where plain LRU is at its best.

Listening has skips: 30% of plays stop within the first 5-30 s and 15% somewhere in the
middle, so the first slices of a track are hotter than the rest.

    python -m loadtests.tracegen --workload zipf --alpha 0.8 --one-hit 0.4 --plays 1000000 > t.txt
"""

from __future__ import annotations

import argparse
import itertools
import math
import random
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TextIO

RENDITIONS = ((96, 0.15), (160, 0.60), (320, 0.25))  # kbps and share of plays
HEADER_BYTES = 4096


@dataclass(frozen=True)
class Workload:
    kind: str = "zipf"
    plays: int = 1_000_000
    days: int = 7
    catalogue: int = 50_000
    alpha: float = 0.8
    one_hit_share: float = 0.4  # of plays that go to a track nobody plays again
    releases_per_day: int = 200
    seed: int = 1


class _Tracks:
    """Durations of tracks, drawn once per track id."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._seconds: dict[int, float] = {}

    def size(self, track: int, kbps: int) -> int:
        seconds = self._seconds.get(track)
        if seconds is None:
            seconds = min(max(self._rng.lognormvariate(math.log(210), 0.3), 30), 600)
            self._seconds[track] = seconds
        return HEADER_BYTES + int(seconds * kbps * 125)


def _listened(rng: random.Random, size: int, kbps: int) -> int:
    draw = rng.random()
    if draw < 0.30:
        played = int(rng.uniform(5, 30) * kbps * 125) + HEADER_BYTES
    elif draw < 0.45:
        played = int(size * rng.uniform(0.3, 0.9))
    else:
        played = size
    return max(1, min(played, size))


def _zipf_tracks(workload: Workload, rng: random.Random) -> Iterator[int]:
    ranking = list(range(workload.catalogue))
    next_id = workload.catalogue
    weights = list(
        itertools.accumulate(1 / (rank + 1) ** workload.alpha for rank in range(workload.catalogue))
    )
    per_day = workload.plays // workload.days
    for _day in range(workload.days):
        for _ in range(workload.releases_per_day):  # new releases enter near the top
            ranking.insert(int(rng.paretovariate(1.0)) * 10 % (workload.catalogue // 20), next_id)
            next_id += 1
        del ranking[workload.catalogue :]
        ranks = rng.choices(range(workload.catalogue), cum_weights=weights, k=per_day)
        for rank in ranks:
            if rng.random() < workload.one_hit_share:
                yield next_id  # a track played once, never again
                next_id += 1
            else:
                yield ranking[rank]


def _recency_tracks(workload: Workload, rng: random.Random) -> Iterator[int]:
    recent: list[int] = []  # most recent last
    next_id = 0
    for _ in range(workload.plays):
        if recent and rng.random() > workload.one_hit_share:
            distance = min(int(rng.paretovariate(0.9)), len(recent))
            track = recent.pop(-distance)
        else:
            track = next_id
            next_id += 1
        recent.append(track)
        if len(recent) > 20_000:
            del recent[:1000]
        yield track


def generate(workload: Workload, out: TextIO) -> None:
    rng = random.Random(workload.seed)
    tracks = _Tracks(rng)
    source = _zipf_tracks if workload.kind == "zipf" else _recency_tracks
    seconds_per_play = workload.days * 86_400 / workload.plays
    kbps_choices = [kbps for kbps, _ in RENDITIONS]
    shares = [share for _, share in RENDITIONS]
    for n, track in enumerate(source(workload, rng)):
        kbps = rng.choices(kbps_choices, shares)[0]
        size = tracks.size(track, kbps)
        out.write(
            f"{n * seconds_per_play:.3f} t{track}/{kbps} {size} 0 {_listened(rng, size, kbps)}\n"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", choices=("zipf", "recency"), default="zipf")
    parser.add_argument("--plays", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--catalogue", type=int, default=50_000)
    parser.add_argument("--alpha", type=float, default=0.8)
    parser.add_argument(
        "--one-hit", type=float, default=0.4, help="share of plays to one-hit tracks"
    )
    parser.add_argument("--releases-per-day", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    workload = Workload(
        kind=args.workload,
        plays=args.plays,
        days=args.days,
        catalogue=args.catalogue,
        alpha=args.alpha,
        one_hit_share=args.one_hit,
        releases_per_day=args.releases_per_day,
        seed=args.seed,
    )
    generate(workload, sys.stdout)


if __name__ == "__main__":
    main()
