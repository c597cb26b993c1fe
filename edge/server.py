"""Run an edge node: logging, the uvloop event loop, and aiohttp's server."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from aiohttp import web

from edge.app import create_app
from edge.http_limits import http_limits
from edge.key_reload import ignore_reload_signal
from edge.settings import Settings
from edge.workers import Supervisor, worker_count

log = logging.getLogger("edge")

ACCESS_LOG_FORMAT = '%a "%r" %s %b %{Range}i %{X-Cache}o %Tf %{Content-Range}o'


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
    web.run_app(
        create_app(settings, config_path=config_path),
        host=settings.server.host,
        port=settings.server.port,
        access_log_format=ACCESS_LOG_FORMAT,
        print=print if print_urls else None,
        shutdown_timeout=10.0,
        loop=new_event_loop(),
        **http_limits(settings),
    )
