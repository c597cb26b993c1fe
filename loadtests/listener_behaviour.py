"""What listeners choose: which track (popularity over the track list), and how much of it
they hear (skips, seeks). Pure functions of a ``random.Random``, so runs can be reproduced.

The default habits follow what streaming services report for music: about a quarter of plays
are skipped within the first 30 seconds, some more later, and a few plays seek.
"""

from __future__ import annotations

import itertools
import random
import re
from dataclasses import dataclass
from pathlib import Path

_TRACK_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")  # the edge's track id rule
_ZIPF = re.compile(r"zipf:(\d+(?:\.\d+)?)")


def parse_tracks(text: str) -> list[str]:
    """``--tracks``: ids separated by commas, or ``@FILE`` with one id a line (blank lines and
    ``#`` comments skipped, anything after the id ignored, as ``encore-edge warm --top``)."""
    if text.startswith("@"):
        path = Path(text[1:])
        try:
            lines = path.read_text().splitlines()
        except OSError as exc:
            raise ValueError(f"cannot read the track list {path}: {exc.strerror}") from None
        ids = [line.split("#", 1)[0].split()[0] for line in lines if line.split("#", 1)[0].strip()]
    else:
        ids = [part.strip() for part in text.split(",") if part.strip()]
    if not ids:
        raise ValueError("no track ids given")
    for track_id in ids:
        if not _TRACK_ID.fullmatch(track_id):
            raise ValueError(f"{track_id!r} is not a track id (1-128 of A-Z a-z 0-9 _ -)")
    return ids


class Popularity:
    """A Zipf law over the track list in its order: the track at rank k is drawn with weight
    ``1 / k**exponent`` (0 gives every track the same chance)."""

    def __init__(self, tracks: list[str], exponent: float) -> None:
        if not tracks:
            raise ValueError("no track ids given")
        self.tracks = list(tracks)
        self.exponent = exponent
        weights = [1 / rank**exponent for rank in range(1, len(tracks) + 1)]
        self._cumulative = list(itertools.accumulate(weights))

    @classmethod
    def parse(cls, tracks: list[str], text: str) -> Popularity:
        """``--popularity zipf:S``."""
        match = _ZIPF.fullmatch(text.strip())
        if not match:
            raise ValueError(f"--popularity: expected zipf:S such as zipf:1.0, got {text!r}")
        return cls(tracks, float(match.group(1)))

    def draw(self, rng: random.Random, instead_of: str | None = None) -> str:
        """A track; not ``instead_of`` (the one just played) when there is another."""
        for _ in range(16):
            track = rng.choices(self.tracks, cum_weights=self._cumulative)[0]
            if track != instead_of or len(self.tracks) == 1:
                return track
        return next(t for t in self.tracks if t != instead_of)


@dataclass(frozen=True, slots=True)
class Habits:
    early_skip_share: float = 0.25  # plays that stop within the first 30 s
    early_skip_within_s: float = 30.0
    late_skip_share: float = 0.15  # plays that stop later, before the end
    seek_share: float = 0.15  # plays with one seek


@dataclass(frozen=True, slots=True)
class PlayPlan:
    """How one play goes: where it stops (the end, or a skip) and an optional seek."""

    stop_s: float
    seek_at_s: float | None = None
    seek_to_s: float | None = None

    def skipped(self, duration_s: float) -> bool:
        return self.stop_s < duration_s


def draw_plan(rng: random.Random, duration_s: float, habits: Habits = Habits()) -> PlayPlan:
    roll = rng.random()
    stop_s = duration_s
    if roll < habits.early_skip_share:
        stop_s = rng.uniform(1.0, min(habits.early_skip_within_s, duration_s))
    elif (
        roll < habits.early_skip_share + habits.late_skip_share
        and duration_s > habits.early_skip_within_s
    ):
        stop_s = rng.uniform(habits.early_skip_within_s, duration_s)
    stop_s = min(stop_s, duration_s)
    if rng.random() < habits.seek_share and stop_s > 2.0:
        # Back or ahead, within what the listener will hear before stopping.
        return PlayPlan(stop_s, rng.uniform(0.2, 0.8) * stop_s, rng.uniform(0.0, 0.9) * stop_s)
    return PlayPlan(stop_s)
