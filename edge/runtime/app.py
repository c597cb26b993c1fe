"""The edge's aiohttp application factory: settings in, a wired app out.

Long-lived resources (the origin client) are opened and closed in ``cleanup_ctx``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from aiohttp import web

from edge.access.checks import Access
from edge.access.key_reload import listen_for_reload
from edge.admin.api import CONTROL_COMMANDS, serve_admin
from edge.admin.control import serve_control
from edge.api import tracks
from edge.cache.disk import DiskTier
from edge.cache.next_track import NextTrackHints
from edge.cache.prefetch import Prefetcher
from edge.cache.store import SliceStore
from edge.http.middleware import MIDDLEWARES, add_cors_headers
from edge.runtime.context import WorkerContext
from edge.telemetry import metrics
from edge.upstream.breaker import CircuitBreaker
from edge.upstream.bucket import Origin
from edge.upstream.guard import OriginGuard
from edge.upstream.manifests import ManifestPolicy, ManifestStore
from origin.s3 import open_s3_client
from origin.settings import Settings

SETTINGS = tracks.SETTINGS
READY = web.AppKey("ready", list[bool])  # a one-element box: flipped by startup and shutdown
WORKER = web.AppKey("worker", tuple[int, int])  # (this worker's index, how many there are)
CONTROL_DIR = web.AppKey("control_dir", tuple[Path | None])
# The monotonic clock of the bounds the edge keeps itself (manifest TTLs, negative caches, the
# breaker's open period, the hint budget); waits on the event loop keep the loop's clock.
CLOCK: web.AppKey[Callable[[], float]] = web.AppKey("clock")
MAX_BODY_BYTES = 4096  # the public API takes no request bodies
# At shutdown, how long slices already fetched may take to reach the disk tier.
DISK_WRITES_DRAIN_S = 5.0


async def healthz(request: web.Request) -> web.Response:
    """Alive: the process answers."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Ready: the origin client is open, the disk index is rebuilt, and the node is not
    shutting down. (Requests are served while the disk index is rebuilt, a few seconds.)"""
    if not request.app[READY][0]:
        return web.json_response({"status": "not_ready"}, status=503)
    store = request.app[tracks.SLICES]
    if store.disk is not None and not store.disk.rebuilt.is_set():
        return web.json_response({"status": "rebuilding_disk_index"}, status=503)
    return web.json_response({"status": "ready"})


async def _origin_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    worker, workers = app[WORKER]
    async with open_s3_client(settings.origin) as client:
        clock = app[CLOCK]
        guard = _origin_guard(settings, Origin(client, settings.origin.bucket), clock)
        edge = settings.edge
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
        cache = settings.cache
        disk = None
        if cache.disk_bytes > 0:
            disk = DiskTier(
                Path(cache.disk_path),
                cache.disk_bytes,
                cache.slice_bytes,
                cache.policy,
                worker=worker,
                workers=workers,
            )
        store = SliceStore(
            guard,
            cache.memory_bytes // workers,  # cache.memory_bytes is the node's: each worker's share
            cache.slice_bytes,
            policy=cache.policy,
            disk=disk,
            max_waiters=cache.max_waiters,
            negative_ttl_s=edge.negative_ttl_s,
            look_ahead=cache.prefetch_slices,
            clock=clock,
        )
        prefetcher = Prefetcher(store, cache.prefetch_concurrency)
        app[tracks.MANIFESTS], app[tracks.SLICES], app[tracks.PREFETCHER] = (
            manifests,
            store,
            prefetcher,
        )
        app[tracks.HINTS] = NextTrackHints(
            app[tracks.ACCESS], manifests, prefetcher, slices=cache.next_track_slices, clock=clock
        )
        context = WorkerContext(
            settings,
            manifests,
            store,
            prefetcher,
            app[tracks.ACCESS],
            index=worker,
            count=workers,
            control_dir=app[CONTROL_DIR][0],
        )
        prefetcher.start()
        rebuild = asyncio.create_task(disk.rebuild()) if disk is not None else None
        admin = serve_admin(context)
        control = serve_control(context, CONTROL_COMMANDS)
        await anext(admin)
        await anext(control)
        app[READY][0] = True
        yield
        app[READY][0] = False
        await control.aclose()
        await admin.aclose()
        await prefetcher.stop()
        if rebuild is not None:
            rebuild.cancel()
            await asyncio.gather(rebuild, return_exceptions=True)
        await store.drain(DISK_WRITES_DRAIN_S)


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


async def _not_ready_on_shutdown(app: web.Application) -> None:
    app[READY][0] = False


def create_app(
    settings: Settings,
    *,
    worker: int = 0,
    workers: int = 1,
    control_dir: Path | None = None,
    config_path: Path | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> web.Application:
    """``worker`` of ``workers``; with several, ``control_dir`` holds their control sockets.
    With ``config_path``, SIGHUP reloads the signing keys from it (``edge.access.key_reload``)."""
    app = web.Application(middlewares=MIDDLEWARES, client_max_size=MAX_BODY_BYTES)
    app[SETTINGS] = settings
    app[WORKER] = (worker, workers)
    app[CONTROL_DIR] = (control_dir,)
    app[CLOCK] = clock
    access = app[tracks.ACCESS] = Access.from_settings(settings)
    if config_path is not None:

        async def reload_on_sighup(app: web.Application) -> None:
            listen_for_reload(access, config_path, settings.auth)

        app.on_startup.append(reload_on_sighup)
    app[READY] = [False]
    app.cleanup_ctx.append(_origin_ctx)
    app.on_shutdown.append(_not_ready_on_shutdown)
    app.on_response_prepare.append(add_cors_headers)
    tracks.add_routes(app)
    app.router.add_get("/healthz", healthz, name="healthz")
    app.router.add_get("/readyz", readyz, name="readyz")
    app.router.add_get("/metrics", metrics.metrics_handler, name="metrics")
    return app
