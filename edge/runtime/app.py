"""One worker's edge, wired from its settings: the origin client, the manifest and slice
stores, prefetch, the checks, the admin and control listeners, and the public handler.

:meth:`EdgeApp.start` opens what lives as long as the worker; :meth:`EdgeApp.stop` closes it
again, draining the disk writes of slices already fetched.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import AsyncGenerator, Callable
from pathlib import Path

from edge.access.checks import Access
from edge.access.key_reload import listen_for_reload
from edge.admin.api import CONTROL_COMMANDS, serve_admin
from edge.admin.control import ask_peers, serve_control
from edge.api.hot_hits import HotHits
from edge.api.router import PublicApi
from edge.api.services import Services
from edge.cache.disk import DiskTier
from edge.cache.next_track import NextTrackHints
from edge.cache.player_hints import PlayerHints
from edge.cache.prefetch import Prefetcher
from edge.cache.store import SliceStore
from edge.runtime.context import WorkerContext
from edge.telemetry.player_reports import PlayerReports
from edge.upstream.breaker import CircuitBreaker
from edge.upstream.bucket import Origin
from edge.upstream.guard import OriginGuard
from edge.upstream.manifests import ManifestPolicy, ManifestStore
from origin.s3 import open_s3_client
from origin.settings import Settings

# At shutdown, how long slices already fetched may take to reach the disk tier.
DISK_WRITES_DRAIN_S = 5.0


class EdgeApp:
    """``worker`` of ``workers``; with several, ``control_dir`` holds their control sockets.
    With ``config_path``, SIGHUP reloads the signing keys from it (``edge.access.key_reload``).
    ``clock``: the monotonic clock of the bounds the edge keeps itself (manifest TTLs,
    negative caches, the breaker's open period, the hint budget)."""

    def __init__(
        self,
        settings: Settings,
        *,
        worker: int = 0,
        workers: int = 1,
        control_dir: Path | None = None,
        config_path: Path | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.worker, self.workers = worker, workers
        self.control_dir = control_dir
        self.config_path = config_path
        self.clock = clock
        self.access = Access.from_settings(settings)
        self._services: Services | None = None
        self._stack = contextlib.AsyncExitStack()
        self._rebuild: asyncio.Task[None] | None = None

    @property
    def services(self) -> Services:
        assert self._services is not None, "the edge is not started"
        return self._services

    @property
    def manifests(self) -> ManifestStore:
        return self.services.manifests

    @property
    def slices(self) -> SliceStore:
        return self.services.slices

    @property
    def prefetcher(self) -> Prefetcher:
        return self.services.prefetcher

    def handler(self) -> PublicApi:
        return PublicApi(self.services)

    async def start(self) -> None:
        """Open the origin client and everything that uses it. On failure, what was opened
        is closed again."""
        try:
            await self._start()
        except BaseException:
            await self._stack.aclose()
            raise

    async def _start(self) -> None:
        settings, clock = self.settings, self.clock
        if self.config_path is not None:
            listen_for_reload(self.access, self.config_path, settings.auth)
        client = await self._stack.enter_async_context(open_s3_client(settings.origin))
        guard = _origin_guard(settings, Origin(client, settings.origin.bucket), clock)
        edge, cache = settings.edge, settings.cache
        manifests = ManifestStore(
            guard,
            ManifestPolicy(
                ttl_s=edge.manifest_ttl_s,
                stale_while_revalidate_s=edge.manifest_stale_while_revalidate_s,
                stale_if_error_s=edge.manifest_stale_if_error_s,
                negative_ttl_s=edge.negative_ttl_s,
                max_bytes=edge.manifest_cache_bytes,
            ),
            clock=clock,
        )
        disk = None
        if cache.disk_bytes > 0:
            disk = DiskTier(
                Path(cache.disk_path),
                cache.disk_bytes,
                cache.slice_bytes,
                cache.policy,
                worker=self.worker,
                workers=self.workers,
            )
        store = SliceStore(
            guard,
            cache.memory_bytes // self.workers,  # cache.memory_bytes is the node's
            cache.slice_bytes,
            policy=cache.policy,
            disk=disk,
            max_waiters=cache.max_waiters,
            negative_ttl_s=edge.negative_ttl_s,
            look_ahead=cache.prefetch_slices,
            clock=clock,
        )
        prefetcher = Prefetcher(store, cache.prefetch_concurrency)
        hints = NextTrackHints(
            self.access, manifests, prefetcher, slices=cache.next_track_slices, clock=clock
        )
        hot = HotHits(store, prefetcher, cache.prefetch_slices)
        self._services = Services(
            settings,
            self.access,
            manifests,
            store,
            prefetcher,
            hints,
            hot,
            PlayerReports(self.access.licences.metric_region),
            PlayerHints(hints, prefetcher, look_ahead=cache.prefetch_slices),
        )
        context = WorkerContext(
            settings,
            manifests,
            store,
            prefetcher,
            self.access,
            index=self.worker,
            count=self.workers,
            control_dir=self.control_dir,
        )
        if self.workers > 1 and self.control_dir is not None:
            self._services.fold_peers = functools.partial(ask_peers, context, "fold")
        prefetcher.start()
        self._stack.push_async_callback(self._stop_stores)
        if disk is not None:
            self._rebuild = asyncio.create_task(disk.rebuild())
        await _enter(self._stack, serve_admin(context))
        await _enter(self._stack, serve_control(context, CONTROL_COMMANDS))
        self._services.ready[0] = True

    async def _stop_stores(self) -> None:
        services = self.services
        await services.prefetcher.stop()
        if self._rebuild is not None:
            self._rebuild.cancel()
            await asyncio.gather(self._rebuild, return_exceptions=True)
        await services.slices.drain(DISK_WRITES_DRAIN_S)

    def not_ready(self) -> None:
        """Shutting down: /readyz says so, so load balancers stop sending."""
        if self._services is not None:
            self._services.ready[0] = False

    async def stop(self) -> None:
        self.not_ready()
        await self._stack.aclose()


async def _enter(stack: contextlib.AsyncExitStack, lifetime: AsyncGenerator[None, None]) -> None:
    """Run ``lifetime`` up to its ``yield`` now, and the rest when ``stack`` closes."""
    await anext(lifetime)
    stack.push_async_callback(lifetime.aclose)


def _origin_guard(settings: Settings, origin: Origin, clock: Callable[[], float]) -> OriginGuard:
    config = settings.origin
    breaker = CircuitBreaker(config.breaker_failures, config.breaker_open_s, clock)
    return OriginGuard(
        origin,
        breaker,
        retries=config.retries,
        backoff_s=config.retry_backoff_s,
        deadline_s=config.deadline_s,
    )


create_app = EdgeApp  # the factory's name in tests and tools
