"""One worker process: logging, the uvloop event loop, the edge app, and the public listener,
until SIGTERM or SIGINT; then a graceful stop. SIGUSR1 reopens the access log file."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from pathlib import Path

from edge.http.listener import Listener, limits_of
from edge.runtime.app import EdgeApp
from edge.telemetry import metrics
from edge.telemetry.access_log import AccessLog
from edge.telemetry.answers import Answers
from origin.settings import Settings

log = logging.getLogger("edge")

DRAIN_S = 10.0  # how long requests in flight may take to finish at shutdown
FOLD_S = 1.0  # how often the hot path's plain counters reach prometheus-client
# The cyclic collector's young-generation threshold while serving (CPython's default is 700
# allocations). A crowd keeps hundreds of requests alive at once: at 700 the collector runs
# every few requests and walks all of them, again and again; at this size it mostly finds
# them gone. Cyclic garbage waits a little longer, a few MB at most.
GC_GEN0_THRESHOLD = 20_000


def settle_heap() -> None:
    """Once started: collect, then freeze what startup left (modules, settings, the origin
    client), so the collector never walks it again; and collect less often."""
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GC_GEN0_THRESHOLD, gen1, gen2)


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


def access_log_of(settings: Settings) -> AccessLog | None:
    server = settings.server
    if not server.access_log:
        return None
    return AccessLog(server.access_log_path, server.access_log_format)


class Serving:
    """An :class:`EdgeApp` behind the public listener, started and stopped together."""

    def __init__(self, app: EdgeApp, access_log: AccessLog | None) -> None:
        self.app = app
        self.access_log = access_log
        self.answers = Answers(access_log)
        self.listener: Listener | None = None
        self._fold: asyncio.TimerHandle | None = None

    async def start(self, host: str, port: int, *, reuse_port: bool = False) -> int:
        """Start the app, then listen; the port."""
        await self.app.start()
        loop = asyncio.get_running_loop()
        if self.access_log is not None:
            self.access_log.start(loop)
        self._fold = loop.call_later(FOLD_S, self._fold_now, loop)
        self.listener = Listener(
            self.app.handler(), self.answers, limits_of(self.app.settings.server)
        )
        try:
            return await self.listener.start(host, port, reuse_port=reuse_port)
        except BaseException:
            await self.stop(0)
            raise

    def _fold_now(self, loop: asyncio.AbstractEventLoop) -> None:
        metrics.fold()
        self._fold = loop.call_later(FOLD_S, self._fold_now, loop)

    async def stop(self, drain_s: float = DRAIN_S) -> None:
        """Not ready; stop accepting; let requests in flight finish; stop the app (which
        drains pending disk writes); flush the counters and the access log."""
        self.app.not_ready()
        if self.listener is not None:
            await self.listener.stop(drain_s)
        await self.app.stop()
        if self._fold is not None:
            self._fold.cancel()
        metrics.fold()
        if self.access_log is not None:
            self.access_log.close()


def serve(
    app: EdgeApp,
    *,
    loop: asyncio.AbstractEventLoop,
    reuse_port: bool = False,
    drain_s: float = DRAIN_S,
    banner: str | None = None,
) -> None:
    """Serve ``app`` on ``server.host:server.port`` until SIGTERM or SIGINT."""
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(_serve(app, reuse_port=reuse_port, drain_s=drain_s, banner=banner))
    finally:
        leftovers = [task for task in asyncio.all_tasks(loop) if not task.done()]
        for task in leftovers:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*leftovers, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.run_until_complete(loop.shutdown_default_executor())
        asyncio.set_event_loop(None)
        loop.close()


async def _serve(app: EdgeApp, *, reuse_port: bool, drain_s: float, banner: str | None) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    serving = Serving(app, access_log_of(app.settings))
    if serving.access_log is not None:
        loop.add_signal_handler(signal.SIGUSR1, serving.access_log.reopen)
    server = app.settings.server
    try:
        port = await serving.start(server.host, server.port, reuse_port=reuse_port)
        settle_heap()
        if banner is not None:
            print(banner.format(url=f"http://{server.host}:{port}"), flush=True)
        await stop.wait()
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1):
            loop.remove_signal_handler(signum)
        await serving.stop(drain_s)


def run_worker(
    settings: Settings,
    index: int,
    count: int,
    control_dir: Path | None,
    config_path: Path | None,
    *,
    reuse_port: bool,
    banner: str | None = None,
) -> None:
    """The body of a worker process (or of a one-worker node)."""
    configure_logging()
    metrics.worker_started()
    app = EdgeApp(
        settings, worker=index, workers=count, control_dir=control_dir, config_path=config_path
    )
    serve(app, loop=new_event_loop(), reuse_port=reuse_port, banner=banner)
