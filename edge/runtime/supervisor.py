"""Several worker processes on one port: a small supervisor and the workers it spawns.

Each worker is a fresh interpreter (the ``spawn`` start method) running the whole edge app
on its own socket bound with SO_REUSEPORT, so the kernel spreads connections across them.
Workers share the disk tier (each owns a hash partition of it, see ``edge.cache.disk``) and
report metrics through prometheus-client's multiprocess mode, in a folder the supervisor
creates before spawning them, so ``/metrics`` on any worker adds all of them up. A second
private folder holds each worker's control socket (``edge.admin.control``), through which an admin
purge or stats request taken by one worker reaches the others.

SIGTERM or SIGINT to the supervisor is passed on: each worker stops accepting, drains its
in-flight requests (up to ``DRAIN_S``), and exits. SIGHUP is passed on too: each worker
reloads its signing keys. A worker that dies otherwise is replaced.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import tempfile
import time
from dataclasses import replace
from multiprocessing.process import BaseProcess
from pathlib import Path
from types import FrameType

from edge.runtime.app import DISK_WRITES_DRAIN_S
from edge.runtime.worker import DRAIN_S
from origin.settings import Settings

log = logging.getLogger("edge.runtime.supervisor")

RESTART_PAUSE_S = 1.0  # between replacing a worker that died and replacing it again
QUICK_DEATH_S = 5.0
MAX_QUICK_DEATHS = 5


class WorkersFailing(RuntimeError):
    """Workers die as soon as they start; the supervisor stops rather than loop."""


def worker_count(settings: Settings) -> int:
    return settings.server.workers or os.cpu_count() or 1


def _worker_main(
    settings: Settings, index: int, count: int, control_dir: Path, config_path: Path | None
) -> None:
    """The body of one worker process (imported afresh, after the metrics folder is set)."""
    from edge.access.key_reload import ignore_reload_signal  # noqa: PLC0415

    ignore_reload_signal()
    from edge.runtime.worker import run_worker  # noqa: PLC0415 - a fresh process

    run_worker(settings, index, count, control_dir, config_path, reuse_port=True)


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


class Supervisor:
    def __init__(self, settings: Settings, count: int, config_path: Path | None = None) -> None:
        if settings.server.port == 0:  # every worker must bind the same port
            port = _free_port(settings.server.host)
            settings = replace(settings, server=replace(settings.server, port=port))
        self.settings = settings
        self.count = count
        self.config_path = config_path
        self._context = multiprocessing.get_context("spawn")
        self._workers: dict[int, BaseProcess] = {}
        self._stopping = False
        self._metrics_dir = ""
        self._control_dir = Path()

    def run(self, *, print_urls: bool = True) -> None:
        self._metrics_dir = tempfile.mkdtemp(prefix="encore-metrics-")
        self._control_dir = Path(tempfile.mkdtemp(prefix="encore-control-"))  # mode 0700
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = self._metrics_dir
        previous = {
            signum: signal.signal(signum, self._stop) for signum in (signal.SIGTERM, signal.SIGINT)
        }
        previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, self._pass_on)
        previous[signal.SIGUSR1] = signal.signal(signal.SIGUSR1, self._pass_on)
        try:
            for index in range(self.count):
                self._start(index)
            if print_urls:
                server = self.settings.server
                print(f"======== Running on http://{server.host}:{server.port} "
                      f"({self.count} workers) ========", flush=True)  # fmt: skip
            self._watch()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            self._stop_all()
            shutil.rmtree(self._metrics_dir, ignore_errors=True)
            shutil.rmtree(self._control_dir, ignore_errors=True)

    def _start(self, index: int) -> None:
        process = self._context.Process(
            target=_worker_main,
            args=(self.settings, index, self.count, self._control_dir, self.config_path),
            name=f"encore-edge-worker-{index}",
        )
        process.start()
        self._workers[index] = process
        log.info("worker %d started (pid %s)", index, process.pid)

    def _watch(self) -> None:
        started = dict.fromkeys(self._workers, time.monotonic())
        quick_deaths = 0
        while not self._stopping:
            for index, process in list(self._workers.items()):
                process.join(timeout=0.2)
                if process.is_alive() or self._stopping:
                    continue
                log.error("worker %d (pid %s) exited with %s", index, process.pid, process.exitcode)
                self._forget_metrics(process.pid)
                # Workers that fail on their own right after starting (the port is taken)
                # would only fail again: give up instead of looping. A worker killed by a
                # signal (negative exit code: an OOM kill, an operator) is simply replaced.
                lived = time.monotonic() - started[index]
                failed = (process.exitcode or 0) > 0 and lived < QUICK_DEATH_S
                quick_deaths = quick_deaths + 1 if failed else 0
                if quick_deaths >= MAX_QUICK_DEATHS:
                    raise WorkersFailing(
                        f"workers keep exiting right after start (last exit status "
                        f"{process.exitcode}); see the log above"
                    )
                if lived < RESTART_PAUSE_S:
                    time.sleep(RESTART_PAUSE_S)
                self._start(index)
                started[index] = time.monotonic()

    def _forget_metrics(self, pid: int | None) -> None:
        if pid is None:
            return
        from prometheus_client import multiprocess  # noqa: PLC0415

        multiprocess.mark_process_dead(pid, self._metrics_dir)  # type: ignore[no-untyped-call]

    def _pass_on(self, signum: int, frame: FrameType | None) -> None:
        """SIGHUP: each worker reloads its signing keys (``edge.access.key_reload``);
        SIGUSR1: each reopens its access log file."""
        for process in self._workers.values():
            if process.is_alive() and process.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signum)

    def _stop(self, signum: int, frame: FrameType | None) -> None:
        self._stopping = True

    def _stop_all(self) -> None:
        for process in self._workers.values():
            if process.is_alive() and process.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGTERM)  # drain, then exit
        # Each drains its requests, then its pending disk writes; past that, it is killed.
        deadline = time.monotonic() + DRAIN_S + DISK_WRITES_DRAIN_S + 5
        for process in self._workers.values():
            process.join(timeout=max(deadline - time.monotonic(), 0))
            if process.is_alive():
                process.kill()
                process.join()
