"""What the public routes work with: one worker's settings, checks, stores, hints and the
players' reports."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from edge.access.checks import Access
from edge.api.hot_hits import HotHits
from edge.cache.next_track import NextTrackHints
from edge.cache.player_hints import PlayerHints
from edge.cache.prefetch import Prefetcher
from edge.cache.store import SliceStore
from edge.telemetry.player_reports import PlayerReports
from edge.upstream.manifests import ManifestStore
from origin.settings import Settings


@dataclass(slots=True)
class Services:
    settings: Settings
    access: Access
    manifests: ManifestStore
    slices: SliceStore
    prefetcher: Prefetcher
    hints: NextTrackHints
    hot: HotHits
    players: PlayerReports  # CMCD reports, counted
    player_hints: PlayerHints  # CMCD's nrr and nor
    # Ready to serve: set once the worker has started, cleared when it begins to stop.
    ready: list[bool] = field(default_factory=lambda: [False])
    # Asks this node's other workers to fold their counts, before /metrics is rendered.
    fold_peers: Callable[[], Awaitable[object]] | None = None
