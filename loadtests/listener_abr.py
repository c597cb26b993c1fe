"""Bitrate choice from measured throughput: start low, go down at once on a slow segment,
go up one rung at a time and only after the throughput has held (hysteresis).

A rung played at ``speed`` times real time needs ``kbps * speed`` of throughput, so a sped-up
run asks of the network what that many real listeners would.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


class ThroughputEstimate:
    """Fast and slow moving averages of segment throughput; the estimate is the lower one,
    so bad news is believed at once and good news only when it lasts (as Shaka Player does)."""

    def __init__(self, fast_half_life: float = 2.0, slow_half_life: float = 5.0) -> None:
        self._alphas = (math.pow(0.5, 1 / fast_half_life), math.pow(0.5, 1 / slow_half_life))
        self._averages = [0.0, 0.0]
        self.samples = 0

    def add(self, kbps: float) -> None:
        self.samples += 1
        for i, alpha in enumerate(self._alphas):
            self._averages[i] = alpha * self._averages[i] + (1 - alpha) * kbps

    @property
    def kbps(self) -> float | None:
        if not self.samples:
            return None
        # Averages that start at zero are scaled up by the weight their samples have so far.
        return min(
            average / (1 - alpha**self.samples)
            for average, alpha in zip(self._averages, self._alphas, strict=True)
        )


@dataclass(frozen=True, slots=True)
class AbrRules:
    safety: float = 0.7  # a rung may use this share of the estimated throughput
    up_margin: float = 1.2  # going up needs this much more than the next rung costs
    up_after: int = 2  # segments in a row that could carry the next rung before going up
    slow_share: float = 0.8  # a segment whose download took this share of its play time is slow
    up_min_buffer_s: float = 4.0  # no up-switch with less audio buffered than this


class Abr:
    """Chooses the rung of ``ladder_kbps`` (ascending) for the next segment. A rung played at
    ``speed`` needs ``kbps * speed`` of throughput."""

    def __init__(
        self,
        ladder_kbps: Sequence[int],
        *,
        speed: float,
        estimate: ThroughputEstimate,
        rules: AbrRules = AbrRules(),
    ) -> None:
        self.ladder_kbps = list(ladder_kbps)
        self.speed = speed
        self.estimate = estimate
        self.rules = rules
        self._good_in_a_row = 0
        # Start conservatively: the lowest rung, or what a previous track's throughput carries.
        self.index = min(self._sustainable(), len(self.ladder_kbps) - 1)

    def on_segment(self, size: int, seconds: float, media_s: float, buffer_s: float) -> int:
        """Learn from a downloaded segment; -1, 0 or +1: the switch made for the next one."""
        seconds = max(seconds, 1e-4)
        self.estimate.add(size * 8 / 1000 / seconds)
        slow = seconds > self.rules.slow_share * media_s / self.speed
        sustainable = self._sustainable()
        if (slow or sustainable < self.index) and self.index > 0:
            self.index = min(sustainable, self.index - 1)
            self._good_in_a_row = 0
            return -1
        top = len(self.ladder_kbps) - 1
        if self.index < top and self._can_go_up() and buffer_s >= self.rules.up_min_buffer_s:
            self._good_in_a_row += 1
            if self._good_in_a_row >= self.rules.up_after:
                self.index += 1
                self._good_in_a_row = 0
                return 1
        else:
            self._good_in_a_row = 0
        return 0

    def _usable_kbps(self) -> float:
        estimate = self.estimate.kbps
        return 0.0 if estimate is None else estimate * self.rules.safety

    def _sustainable(self) -> int:
        """The highest rung the estimate carries at this speed (the lowest if none does)."""
        usable = self._usable_kbps()
        fitting = [i for i, kbps in enumerate(self.ladder_kbps) if kbps * self.speed <= usable]
        return fitting[-1] if fitting else 0

    def _can_go_up(self) -> bool:
        next_kbps = self.ladder_kbps[self.index + 1]
        return next_kbps * self.speed * self.rules.up_margin <= self._usable_kbps()
