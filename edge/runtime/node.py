"""Run an edge node: logging, the uvloop event loop, and the listener (``edge.http.server``)."""

from __future__ import annotations

import asyncio
import gc
import logging
from pathlib import Path

from aiohttp import web

from edge.access.key_reload import ignore_reload_signal
from edge.http.server import serve as serve_app
from edge.runtime.app import create_app
from edge.runtime.supervisor import DRAIN_S, Supervisor, worker_count
from origin.settings import Settings

log = logging.getLogger("edge")

# The cyclic collector's young-generation threshold while serving (CPython's default is 700
# allocations). A crowd keeps hundreds of requests alive at once: at 700 the collector runs
# every few requests and walks all of them, again and again; at this size it mostly finds
# them gone. Cyclic garbage waits a little longer, a few MB at most.
GC_GEN0_THRESHOLD = 20_000


async def settle_heap(app: web.Application) -> None:
    """Once the app has started: collect, then freeze what startup left (modules, settings,
    the origin client), so the collector never walks it again; and collect less often."""
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GC_GEN0_THRESHOLD, gen1, gen2)


def for_serving(app: web.Application) -> web.Application:
    """``app`` as a serving process runs it, with its heap settled once started (the tests
    serve ``create_app`` as it is)."""
    app.on_startup.append(settle_heap)
    return app


def configure_logging() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop where it is installed, else asyncio's own loop."""
    try:
        import uvloop  # noqa: PLC0415 - optional speed-up, absent on some platforms
    except ImportError:
        log.warning("uvloop is not installed; using the default asyncio event loop")
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def serve(settings: Settings, *, print_urls: bool = True, config_path: Path | None = None) -> None:
    """Run the node; with ``config_path``, SIGHUP reloads the signing keys from it."""
    count = worker_count(settings)
    if count > 1:
        Supervisor(settings, count, config_path=config_path).run(print_urls=print_urls)
        return
    ignore_reload_signal()
    serve_app(
        for_serving(create_app(settings, config_path=config_path)),
        settings,
        loop=new_event_loop(),
        shutdown_timeout=DRAIN_S,
        banner="======== Running on {url} ========" if print_urls else None,
    )
