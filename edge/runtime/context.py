"""One worker's long-lived parts, for the code that acts on the worker as a whole: the admin
API (warm, purge, stats) and the control socket other workers reach it on."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from edge.access.checks import Access
from edge.cache.prefetch import Prefetcher
from edge.cache.store import SliceStore
from edge.upstream.manifests import ManifestStore
from origin.settings import Settings


@dataclass(frozen=True, slots=True)
class WorkerContext:
    settings: Settings
    manifests: ManifestStore
    slices: SliceStore
    prefetcher: Prefetcher
    access: Access
    index: int = 0  # this worker's number, 0..count-1
    count: int = 1
    control_dir: Path | None = None  # where each worker's control socket is (several workers)
    started_at: float = field(default_factory=time.monotonic)
