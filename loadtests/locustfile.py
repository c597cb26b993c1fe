"""Locust listeners for an Encore edge: each plays tracks as a player does (manifest, bitrate
choice from measured throughput, codec headers, ranges at playback pace, stalls, seeks and
skips, a next-track hint), sends CMCD as dash.js does, and reports its quality of experience.

    locust -f loadtests/locustfile.py --headless -u 200 -r 20 -t 10m --host http://127.0.0.1:8080 \\
        --tracks @top.txt --popularity zipf:1.0 --speed 4 --region SE \\
        --csv var/load/run --qoe-report var/load/qoe.json

Requests are named by kind (``manifest``, ``header``, ``range``); quality measures are
entries of type ``qoe`` (``startup``, ``seek``, ``stall``, ``switch_up``, ``switch_down``).
With ``--processes N`` or ``--master``/``--worker``, workers send their QoE samples to the
master, which writes the report when it quits; a single process writes it at test stop.
"""

from __future__ import annotations

import sys
from pathlib import Path

# `locust -f loadtests/locustfile.py` puts loadtests/ on sys.path, not the repository root.
_REPO = str(Path(__file__).resolve().parent.parent)
if _REPO not in sys.path:
    sys.path.insert(0, _REPO)

import json  # noqa: E402
import logging  # noqa: E402
import random  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from typing import Any  # noqa: E402

import gevent  # noqa: E402
from locust import FastHttpUser, events, task  # noqa: E402
from locust.contrib.fasthttp import FAILURE_EXCEPTIONS  # noqa: E402
from locust.env import Environment  # noqa: E402
from locust.event import EventHook  # noqa: E402
from locust.runners import MasterRunner, WorkerRunner  # noqa: E402

from loadtests.listener_behaviour import Popularity, parse_tracks  # noqa: E402
from loadtests.listener_player import Fetch, Player, PlayerSettings, Reply, unsigned  # noqa: E402
from loadtests.listener_signing import edge_access  # noqa: E402
from loadtests.qoe_log import QoeLog, QoeRecorder  # noqa: E402
from loadtests.qoe_report import write_report  # noqa: E402

QOE_MESSAGE = "encore_qoe"  # worker -> master: a QoeLog.to_doc() of samples since the last
FLUSH_EVERY_S = 2.0
logger = logging.getLogger("encore.listeners")


def add_arguments(parser: Any) -> None:
    parser.add_argument(
        "--tracks", default="", help="track ids, comma-separated, or @FILE with one id a line"
    )
    parser.add_argument(
        "--popularity", default="zipf:1.0", help="zipf:S over the track list's order"
    )
    parser.add_argument(
        "--speed", type=float, default=1.0, help="playback speed: a short run for a long one"
    )
    parser.add_argument("--region", default="", help="client region sent to the edge, e.g. SE")
    parser.add_argument(
        "--sign-config", default="", help="the edge's TOML config: sign URLs with its keys"
    )
    parser.add_argument("--qoe-report", default="", help="write the QoE JSON and PNGs here")


@dataclass(frozen=True, slots=True)
class Setup:
    popularity: Popularity
    settings: PlayerSettings
    sign: Callable[[str], str]


def build_setup(options: Any) -> Setup:
    """The listeners' setup from the command line; ValueError (or a config error) if bad."""
    if not options.tracks:
        raise ValueError("--tracks is required (ids, comma-separated, or @FILE)")
    if not options.speed > 0:
        raise ValueError(f"--speed must be above 0, got {options.speed}")
    popularity = Popularity.parse(parse_tracks(options.tracks), options.popularity)
    access = edge_access(options.sign_config or None, options.region or None)
    headers = {access.region_header: options.region} if options.region else {}
    settings = PlayerSettings(speed=options.speed, headers=headers)
    return Setup(popularity, settings, access.signer or unsigned)


class QoeProcess:
    """This process's QoE samples, and where they go (the master, or the report)."""

    def __init__(self) -> None:
        self.log = QoeLog()
        self.recorder = QoeRecorder(self.log, on_quality=self.to_locust)
        self.environment: Environment | None = None
        self.setup: Setup | None = None
        self.setup_error = ""
        self.background: list[gevent.Greenlet[Any, Any]] = []

    def to_locust(self, name: str, seconds: float) -> None:
        """A quality measure as a Locust entry of its own (type ``qoe``)."""
        if self.environment is not None:
            self.environment.events.request.fire(  # type: ignore[no-untyped-call]
                request_type="qoe",
                name=name,
                response_time=seconds * 1000,
                response_length=0,
                exception=None,
                context={},
            )

    def flush_to_master(self) -> None:
        runner = self.environment.runner if self.environment else None
        if isinstance(runner, WorkerRunner) and not self.log.is_empty():
            runner.send_message(QOE_MESSAGE, self.log.take().to_doc())

    def write(self) -> None:
        options = self.environment.parsed_options if self.environment else None
        if options is None or not options.qoe_report:
            return
        report = write_report(Path(options.qoe_report), self.log, speed=options.speed)
        logger.info(
            "QoE report %s: %d plays, startup p50 %s s p99 %s s, rebuffer ratio %s, "
            "mean bitrate %s kbps, %d failures",
            options.qoe_report,
            report["plays"],
            report["startup_s"]["p50"],
            report["startup_s"]["p99"],
            report["rebuffer_ratio"],
            report["mean_bitrate_kbps"] and round(report["mean_bitrate_kbps"]),
            sum(report["failures"].values()),
        )

    def stop_background(self) -> None:
        gevent.killall(self.background)
        self.background.clear()


QOE = QoeProcess()


def _every(seconds: float, action: Callable[[], None]) -> None:
    while True:
        gevent.sleep(seconds)
        action()


def on_init(environment: Environment, **_kwargs: Any) -> None:
    QOE.environment = environment
    runner = environment.runner
    options = environment.parsed_options
    if isinstance(runner, MasterRunner):
        runner.register_message(QOE_MESSAGE, on_worker_samples)
    if isinstance(runner, WorkerRunner) or options is None:
        return  # a worker gets the master's options with its first spawn
    try:
        build_setup(options)
        # Workers get ids, not a file they may not have.
        options.tracks = ",".join(parse_tracks(options.tracks))
    except Exception as exc:  # a config error, a bad signing setup, a bad option: one line
        logger.error("encore listeners: %s", exc)
        sys.exit(2)


def on_worker_samples(environment: Environment, msg: Any, **_kwargs: Any) -> None:
    QOE.log.absorb(QoeLog.from_doc(msg.data))


def on_test_start(environment: Environment, **_kwargs: Any) -> None:
    runner = environment.runner
    QOE.log.take()  # a new test starts empty
    if not isinstance(runner, MasterRunner) and environment.parsed_options is not None:
        try:
            QOE.setup, QOE.setup_error = build_setup(environment.parsed_options), ""
        except Exception as exc:  # e.g. a worker without the --sign-config file
            QOE.setup, QOE.setup_error = None, f"encore listeners: {exc}"
            logger.error(QOE.setup_error)
    if isinstance(runner, WorkerRunner):
        QOE.background.append(gevent.spawn(_every, FLUSH_EVERY_S, QOE.flush_to_master))
    elif runner is not None:

        def count_listeners() -> None:
            QOE.recorder.listeners(runner.user_count)

        count_listeners()
        QOE.background.append(gevent.spawn(_every, 1.0, count_listeners))


def on_test_stop(environment: Environment, **_kwargs: Any) -> None:
    """Users are stopped by now (their plays accounted for in on_stop)."""
    QOE.stop_background()
    runner = environment.runner
    if isinstance(runner, WorkerRunner):
        QOE.flush_to_master()  # before the worker says it stopped: the master has it all
    elif not isinstance(runner, MasterRunner):
        QOE.write()


def on_quitting(environment: Environment, **_kwargs: Any) -> None:
    """The master writes at quitting: workers' last samples arrive after its test_stop."""
    if isinstance(environment.runner, MasterRunner):
        QOE.write()


def _listen(hook: EventHook, handler: Callable[..., None]) -> None:
    hook.add_listener(handler)  # type: ignore[no-untyped-call]  # Locust's hooks are untyped


_listen(events.init_command_line_parser, add_arguments)
_listen(events.init, on_init)
_listen(events.test_start, on_test_start)
_listen(events.test_stop, on_test_stop)
_listen(events.quitting, on_quitting)


def _error_code(body: bytes) -> str:
    """The edge's JSON error code (``not_licensed``), or ""."""
    try:
        doc = json.loads(body)
    except ValueError:
        return ""
    return str(doc.get("error", "")) if isinstance(doc, dict) else ""


class Listener(FastHttpUser):
    """One listener. FastHttpUser (geventhttpclient) rather than HttpUser (requests): it costs
    several times less CPU per request, and listeners send many small range requests, so one
    load-generator core carries more of them; it also hands back the response at its head,
    which gives the time to first byte apart from the download time."""

    network_timeout = 10.0
    connection_timeout = 5.0
    concurrency = 2  # a player's connections to the edge

    def on_start(self) -> None:
        if QOE.setup is None:  # a failed start that Locust reports (and exits non-zero)
            raise RuntimeError(QOE.setup_error or "the listeners' setup is missing")
        self._wait_s = 0.0
        self.player = Player(
            transport=self._send,
            sink=QOE.recorder,
            popularity=QOE.setup.popularity,
            clock=time.monotonic,
            settings=QOE.setup.settings,
            sign=QOE.setup.sign,
            rng=random.Random(),
        )

    def wait_time(self) -> float:
        return self._wait_s

    @task
    def listen(self) -> None:
        self._wait_s = self.player.step()

    def on_stop(self) -> None:
        if hasattr(self, "player"):  # on_start may have stopped it first
            self.player.stop()

    def _send(self, fetch: Fetch) -> Reply:
        """One request, reported to Locust under its kind, timed to its last byte."""
        started = time.perf_counter()
        with self.client.get(
            fetch.url,
            name=fetch.kind,
            headers=dict(fetch.headers),
            stream=True,  # returns at the response head: the TTFB
            catch_response=True,
        ) as response:
            ttfb_s = time.perf_counter() - started
            failure: str | None = None
            body = b""
            status = response.status_code
            if status == 0:
                failure = type(getattr(response, "error", None)).__name__
            else:
                try:
                    body = response.content or b""
                except FAILURE_EXCEPTIONS as exc:
                    failure = f"body cut short ({type(exc).__name__})"
            elapsed_s = time.perf_counter() - started
            response.request_meta["response_time"] = elapsed_s * 1000
            response.request_meta["response_length"] = len(body)
            expected = 200 if fetch.length is None else 206
            if failure is None and status != expected:
                failure = f"HTTP {status} {_error_code(body)}".rstrip()
            elif failure is None and fetch.length is not None and len(body) != fetch.length:
                failure = f"{len(body)} bytes of {fetch.length}"
            if failure is None:
                response.success()
            else:
                response.failure(failure)
        kept = body if fetch.kind == "manifest" else b""
        return Reply(len(body), ttfb_s, elapsed_s, failure, kept)
