"""What one response needs from the tiers, decided before its head is sent: the slices memory
held (pinned), those the disk tier had, and what that makes ``X-Cache`` and ``X-Cache-Tier``."""

from __future__ import annotations

import enum

from edge.cache.fills import SliceFill, StoredObject
from edge.cache.slice_files import SliceData


class Tier(enum.IntEnum):
    """Where bytes came from; a higher value is slower."""

    MEMORY = 0
    DISK = 1
    ORIGIN = 2

    @property
    def label(self) -> str:
        return _LABELS[self]


_LABELS = {tier: tier.name.lower() for tier in Tier}  # the metric label, per hit: not per call


class ReadPlan:
    """The slices one response needs: those memory held when it was made (pinned) and those
    the disk tier had (``on_disk``: to be read; ``from_disk``: read already, and pinned in
    ``held`` too)."""

    __slots__ = ("following", "from_disk", "held", "keep_fetched", "needed", "obj", "on_disk")

    def __init__(
        self,
        obj: StoredObject,
        needed: int,
        held: dict[int, SliceData],
        on_disk: set[int],
        *,
        keep_fetched: bool,
        from_disk: frozenset[int] = frozenset(),
    ) -> None:
        self.obj = obj
        self.needed = needed
        self.held = held
        self.on_disk = on_disk
        self.from_disk = from_disk
        # With several ranges, two may share a slice; a single range never revisits one.
        self.keep_fetched = keep_fetched
        self.following: dict[int, SliceFill] = {}  # fills read so far, when keep_fetched

    @property
    def cache_status(self) -> str:
        covered = len(self.held) + len(self.on_disk)
        if covered >= self.needed:
            return "HIT"
        return "PARTIAL" if covered else "MISS"

    @property
    def needs_origin(self) -> bool:
        return len(self.held) + len(self.on_disk) < self.needed

    @property
    def slowest_tier(self) -> Tier:
        if len(self.held) + len(self.on_disk) < self.needed:
            return Tier.ORIGIN
        return Tier.DISK if self.on_disk or self.from_disk else Tier.MEMORY
