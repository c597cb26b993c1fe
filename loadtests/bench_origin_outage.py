"""Origin outage under steady load: cached content keeps being served, uncached requests fail
fast while the circuit breaker is open, and service recovers soon after the origin returns.

Goals: during a 30 s outage, requests for cached content succeed at 100%; uncached requests
fail in under 100 ms each while the breaker is open; normal service is back within 5 s of the
origin coming back.

    python -m loadtests.bench_origin_outage [--outage-s 30] [--hot-rate 50] [--cold-rate 10]
        [--workers 1] [--json]

Setup: ``rclone serve s3`` behind the test TCP proxy (``Faults(latency_s=0.05)``), an edge with
one worker, ``--hot-tracks`` tracks read in full first (so memory holds them) and
``--cold-tracks`` tracks whose manifests are loaded but whose audio is never read before. Load
is open-loop: hot requests (random ranges of hot tracks) and cold requests (one never-read
slice each, walked backwards through the cold tracks so no read-ahead can cache it first)
leave at fixed rates whatever the answers' latency. Timeline: ``--before-s`` normal, then
``--outage-s`` with the proxy down (``set_down``: new connections refused, open ones cut),
then ``--after-s`` with the origin back. All times are client-side.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from loadtests.edge_process import (
    EdgeProcess,
    EdgeProcessError,
    Sections,
    merge,
    metric_lines,
    metric_values,
    parse_overrides,
    percentile,
    publish_random,
    stop_on_sigterm,
)
from loadtests.local_origin import local_origin
from origin.sizes import parse_size
from tests.support.tcp_proxy import Faults, TcpProxy

BUCKET = "audio"
RENDITION = "320"
FAST_FAIL_S = 0.100  # goal for each uncached request while the breaker is open
RECOVERY_GOAL_S = 5.0
BREAKER_METRIC = "encore_origin_breaker_state"
METRIC_PREFIXES = (
    "encore_origin_breaker",
    "encore_origin_requests_total",
    "encore_fill_waits_total",
    "encore_prefetch_",
    "encore_requests_total",
)
HOT_RANGE_MAX = 64 * 1024


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class CountingProxy(TcpProxy):
    """The test proxy, also noting when it refuses a connection (the edge trying the origin
    while it is down), which the proxy's own request list cannot show."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.refused_at: list[float] = []  # time.monotonic() of each refused connection

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.faults.refuse:
            self.refused_at.append(time.monotonic())
        await super()._handle(reader, writer)


@dataclass
class Outcome:
    kind: str  # "hot" or "cold"
    start: float  # seconds relative to the outage's start (negative before it)
    end: float
    status: int  # 0: no HTTP answer
    ok: bool  # a complete 206 with the right bytes
    cache: str
    error: str = ""  # the JSON error code, an exception name, or "wrong bytes"
    retry_after: str = ""

    @property
    def latency_s(self) -> float:
        return self.end - self.start


@dataclass
class Track:
    track_id: str
    data: bytes


class Load:
    """Open-loop request streams against one edge, every outcome kept."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base: str,
        hot: list[Track],
        cold_slices: list[tuple[Track, int]],
        slice_bytes: int,
        seed: int,
    ) -> None:
        self.session = session
        self.base = base
        self.hot = hot
        self.cold_slices = cold_slices
        self.slice_bytes = slice_bytes
        self.random = random.Random(seed)
        self.outcomes: list[Outcome] = []
        self.skipped: Counter[str] = Counter()  # not sent: too many requests in flight
        self.zero = time.monotonic()  # reset to the outage's start once it is known

    def now(self) -> float:
        return time.monotonic() - self.zero

    async def _get(self, kind: str, track: Track, start: int, end: int) -> None:
        url = f"{self.base}/v1/tracks/{track.track_id}/{RENDITION}"
        began = time.monotonic()
        status, cache, error, retry_after = 0, "", "", ""
        ok = False
        try:
            async with self.session.get(url, headers={"Range": f"bytes={start}-{end}"}) as r:
                status = r.status
                cache = r.headers.get("X-Cache", "")
                retry_after = r.headers.get("Retry-After", "")
                body = await r.read()
            if status == 206:
                ok = body == track.data[start : end + 1]
                error = "" if ok else "wrong bytes"
            else:
                error = _error_code(body)
        except (aiohttp.ClientError, TimeoutError) as exc:
            error = type(exc).__name__ + (" (cut after the headers)" if status else "")
        finished = time.monotonic()
        self.outcomes.append(
            Outcome(
                kind, began - self.zero, finished - self.zero, status, ok, cache, error,
                retry_after,
            )
        )  # fmt: skip

    def hot_request(self) -> Awaitable[None]:
        track = self.random.choice(self.hot)
        start = self.random.randrange(len(track.data))
        end = min(start + self.random.randrange(1, HOT_RANGE_MAX + 1), len(track.data)) - 1
        return self._get("hot", track, start, end)

    def cold_request(self) -> Awaitable[None] | None:
        if not self.cold_slices:
            return None
        track, index = self.cold_slices.pop()
        start = index * self.slice_bytes
        end = min(start + self.slice_bytes, len(track.data)) - 1
        return self._get("cold", track, start, end)

    async def drive(
        self,
        kind: str,
        rate: float,
        until: Callable[[], bool],
        make: Callable[[], Awaitable[None] | None],
        max_in_flight: int,
    ) -> None:
        """Send ``rate`` requests a second until ``until()``, never more than ``max_in_flight``
        at once; then wait for the ones still out (they carry their own timeout)."""
        loop = asyncio.get_running_loop()
        tasks: set[asyncio.Future[None]] = set()
        interval = 1 / rate
        due = loop.time()
        while not until():
            if len(tasks) >= max_in_flight:
                self.skipped[kind] += 1
            else:
                request = make()
                if request is None:
                    self.skipped[kind] += 1
                else:
                    task = asyncio.ensure_future(request)
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
            due += interval
            await asyncio.sleep(max(due - loop.time(), 0))
        if tasks:
            await asyncio.wait(tasks)


def _error_code(body: bytes) -> str:
    try:
        document = json.loads(body)
    except ValueError:
        return "non-JSON body"
    return str(document.get("error", "?")) if isinstance(document, dict) else "?"


async def _warm(
    session: aiohttp.ClientSession, base: str, hot: list[Track], cold: list[Track]
) -> None:
    """Read every hot track in full (twice: the second pass must be all memory hits) and load
    every cold track's manifest."""
    for track in cold:
        async with session.get(f"{base}/v1/tracks/{track.track_id}") as response:
            await response.read()
            if response.status != 200:
                raise RuntimeError(f"manifest of {track.track_id}: {response.status}")
    for attempt in range(2):
        for track in hot:
            async with session.get(f"{base}/v1/tracks/{track.track_id}/{RENDITION}") as response:
                body = await response.read()
                if response.status != 200 or body != track.data:
                    raise RuntimeError(f"warming {track.track_id}: {response.status}")
                if attempt and response.headers.get("X-Cache") != "HIT":
                    raise RuntimeError(
                        f"{track.track_id} is not cached after warming "
                        f"(X-Cache {response.headers.get('X-Cache')}); is memory_bytes too small?"
                    )


async def _watch_metric(
    edge: EdgeProcess, load: Load, stop: asyncio.Event, interval_s: float
) -> list[tuple[float, dict[str, float]]]:
    """Every change of the breaker state metric on /metrics, timed relative to the outage."""
    changes: list[tuple[float, dict[str, float]]] = []
    last: dict[str, float] | None = None
    timeout = aiohttp.ClientTimeout(total=2)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        while not stop.is_set():
            try:
                async with session.get(f"{edge.base_url}/metrics") as response:
                    text = await response.text()
                values = metric_values(text, (BREAKER_METRIC,))
                if values != last:
                    changes.append((round(load.now(), 2), values))
                    last = values
            except (aiohttp.ClientError, TimeoutError):
                pass
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval_s)
    return changes


@dataclass
class Timeline:
    before_s: float
    outage_s: float
    after_s: float


async def _run_load(
    edge: EdgeProcess,
    proxy: CountingProxy,
    hot: list[Track],
    cold: list[Track],
    args: argparse.Namespace,
    timeline: Timeline,
) -> tuple[Load, list[tuple[float, dict[str, float]]], list[float]]:
    timeout = aiohttp.ClientTimeout(total=args.request_timeout_s)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        _log("warming the hot set and the cold manifests ...")
        await asyncio.wait_for(_warm(session, edge.base_url, hot, cold), 120)
        # Cold slices, last first: a read-ahead after slice i reaches only slices already read.
        per_track = [
            [(track, i) for i in range(math.ceil(len(track.data) / args.slice))] for track in cold
        ]
        # Slice 0 of every track, then slice 1 of every track, ...: pop() hands them out from
        # the end, so each track is walked backwards.
        cold_slices = [pair for group in zip(*per_track, strict=False) for pair in group]
        load = Load(session, edge.base_url, hot, cold_slices, args.slice, args.seed)
        total = timeline.before_s + timeline.outage_s + timeline.after_s
        load.zero = time.monotonic() + timeline.before_s  # the outage starts here

        def over() -> bool:
            return load.now() >= total - timeline.before_s

        stop = asyncio.Event()
        watcher = asyncio.ensure_future(_watch_metric(edge, load, stop, 0.2))
        drivers = asyncio.gather(
            load.drive("hot", args.hot_rate, over, load.hot_request, args.max_in_flight),
            load.drive("cold", args.cold_rate, over, load.cold_request, args.max_in_flight),
        )
        try:
            _log(f"load: {args.hot_rate:g} hot + {args.cold_rate:g} cold req/s; normal ...")
            await asyncio.sleep(max(-load.now(), 0))
            proxy.set_down(True)
            down_at = load.now()
            _log(f"origin DOWN at {down_at:+.2f} s for {timeline.outage_s:g} s ...")
            await asyncio.sleep(max(timeline.outage_s - load.now(), 0))
            proxy.set_down(False)
            up_at = load.now()
            _log(f"origin UP at {up_at:+.2f} s; {timeline.after_s:g} s more ...")
            await asyncio.wait_for(drivers, timeline.after_s + args.request_timeout_s + 10)
        finally:
            proxy.set_down(False)
            drivers.cancel()
            stop.set()
        changes = await asyncio.wait_for(watcher, 10)
    refused = [t - load.zero for t in proxy.refused_at]
    return load, changes, refused


def _latencies(outcomes: list[Outcome]) -> dict[str, Any]:
    values = [o.latency_s for o in outcomes]
    return {
        "requests": len(outcomes),
        "succeeded": sum(o.ok for o in outcomes),
        "statuses": dict(Counter(str(o.status) for o in outcomes)),
        "errors": dict(Counter(o.error for o in outcomes if o.error)),
        "p50_ms": _ms(percentile(values, 50)),
        "p99_ms": _ms(percentile(values, 99)),
        "max_ms": _ms(max(values, default=None)),
        "over_100ms": sum(v >= FAST_FAIL_S for v in values),
        "slowest": [
            {"t_s": round(o.start, 2), "ms": _ms(o.latency_s), "status": o.status, "error": o.error}
            for o in sorted(outcomes, key=lambda o: o.latency_s)[-3:][::-1]
        ],
    }


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 1)


def _analyse(
    load: Load,
    changes: list[tuple[float, dict[str, float]]],
    refused: list[float],
    timeline: Timeline,
    metrics_text: str,
) -> dict[str, Any]:
    outage_end = timeline.outage_s
    by_phase: dict[str, list[Outcome]] = {"before": [], "outage": [], "after": []}
    for o in load.outcomes:
        phase = "before" if o.start < 0 else "outage" if o.start < outage_end else "after"
        by_phase[phase].append(o)
    hot = {phase: [o for o in got if o.kind == "hot"] for phase, got in by_phase.items()}
    cold = {phase: [o for o in got if o.kind == "cold"] for phase, got in by_phase.items()}

    # The breaker, as a client sees it: the first answer that says it is open.
    circuit_open = [
        o.end for o in cold["outage"] if o.error == "origin_circuit_open" and o.status == 503
    ]
    opened_at = min(circuit_open, default=None)
    before_open = [o for o in cold["outage"] if opened_at is None or o.start < opened_at]
    while_open = [o for o in cold["outage"] if opened_at is not None and o.start >= opened_at]

    after = sorted(cold["after"], key=lambda o: o.start)
    first_success = min((o.end for o in after if o.ok), default=None)
    last_failure = max((i for i, o in enumerate(after) if not o.ok), default=None)
    if last_failure is None:
        steady: float | None = after[0].end if after else None
    elif last_failure + 1 < len(after):
        steady = after[last_failure + 1].end
    else:
        steady = None  # still failing at the end of the run

    def since_up(t: float | None) -> float | None:
        return None if t is None else round(t - outage_end, 3)

    hot_outage = hot["outage"]
    hot_share = sum(o.ok for o in hot_outage) / len(hot_outage) if hot_outage else None
    recovery_steady = since_up(steady)
    failures = Counter(f"{o.status} {o.error}" for o in load.outcomes if not o.ok)
    return {
        "hot": {phase: _latencies(got) for phase, got in hot.items()},
        "cold": {
            "before": _latencies(cold["before"]),
            "outage_before_breaker_opened": _latencies(before_open),
            "outage_while_open": _latencies(while_open),
            "after": _latencies(cold["after"]),
        },
        "breaker_first_open_answer_s": None if opened_at is None else round(opened_at, 3),
        "retry_after_values": dict(Counter(o.retry_after for o in while_open if o.retry_after)),
        "recovery_first_cold_success_s": since_up(first_success),
        "recovery_steady_s": recovery_steady,
        "failures_seen": dict(failures),
        "skipped": dict(load.skipped),
        "origin_connections_refused": {
            "during_outage": len(refused),
            "after_breaker_opened": sum(opened_at is not None and t >= opened_at for t in refused),
        },
        "breaker_metric_changes": [{"t_s": t, "values": v} for t, v in changes],
        "metrics": metric_lines(metrics_text, METRIC_PREFIXES),
        "goals": {
            "hot_success_during_outage_100pct": hot_share == 1.0,
            "cold_fail_fast_while_open": bool(while_open)
            and all(o.latency_s < FAST_FAIL_S for o in while_open),
            "recovered_within_5s": recovery_steady is not None
            and recovery_steady <= RECOVERY_GOAL_S,
        },
        "hot_success_share_during_outage": hot_share,
    }


def _row(name: str, stats: dict[str, Any]) -> str:
    def f(v: object) -> str:
        return "-" if v is None else str(v)

    errors = ", ".join(f"{k} x{v}" for k, v in stats["errors"].items()) or "-"
    return (
        f"  {name:<34} {stats['requests']:>5} {stats['succeeded']:>5} {f(stats['p50_ms']):>8} "
        f"{f(stats['p99_ms']):>8} {f(stats['max_ms']):>8} {stats['over_100ms']:>6}  {errors}"
    )


def _report(result: dict[str, Any], timeline: Timeline, args: argparse.Namespace) -> None:
    print(
        f"origin outage: {timeline.before_s:g} s normal, {timeline.outage_s:g} s down, "
        f"{timeline.after_s:g} s back; {args.hot_rate:g} hot + {args.cold_rate:g} cold req/s; "
        f"{args.workers} worker(s); origin latency {args.origin_latency_ms:g} ms"
    )
    if result["settings_not_supported"]:
        print(
            f"  not supported by this edge (dropped): {', '.join(result['settings_not_supported'])}"
        )
    print(
        f"  {'':<34} {'reqs':>5} {'ok':>5} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} "
        f"{'>100ms':>6}  errors"
    )
    for phase, stats in result["hot"].items():
        print(_row(f"hot, {phase}", stats))
    labels = {
        "before": "cold, before",
        "outage_before_breaker_opened": "cold, outage, before breaker opened",
        "outage_while_open": "cold, outage, while open",
        "after": "cold, after",
    }
    if result["breaker_first_open_answer_s"] is None:
        labels["outage_before_breaker_opened"] = "cold, outage (breaker never open)"
    for key, stats in result["cold"].items():
        print(_row(labels[key], stats))
    slowest = result["cold"]["outage_while_open"]["slowest"]
    if slowest:
        print(
            "  slowest cold while open: "
            + "; ".join(
                f"{o['ms']} ms at {o['t_s']:+.2f} s ({o['status']} {o['error']})" for o in slowest
            )
        )
    opened = result["breaker_first_open_answer_s"]
    print(
        "  breaker: first 'origin_circuit_open' answer "
        + (f"{opened:+.2f} s into the outage" if opened is not None else "never seen")
        + f"; Retry-After values {result['retry_after_values'] or '-'}"
    )
    refused = result["origin_connections_refused"]
    print(
        f"  origin connections refused during the outage: {refused['during_outage']} "
        f"({refused['after_breaker_opened']} after the breaker opened)"
    )
    first, steady = result["recovery_first_cold_success_s"], result["recovery_steady_s"]
    print(
        f"  recovery after the origin came back: first cold success "
        f"{'-' if first is None else f'{first:.2f} s'}, steady "
        f"{'never (still failing at the end)' if steady is None else f'{steady:.2f} s'}"
    )
    print(f"  failed requests (status error: count): {result['failures_seen'] or '-'}")
    if result["skipped"]:
        print(f"  requests not sent (in-flight cap {args.max_in_flight}): {result['skipped']}")
    changes = result["breaker_metric_changes"]
    history = "; ".join(f"{c['t_s']:+.2f} s {c['values']}" for c in changes)
    print(f"  {BREAKER_METRIC} over time: {history if any(c['values'] for c in changes) else '-'}")
    goals = result["goals"]
    hot_share = result["hot_success_share_during_outage"]
    max_open = result["cold"]["outage_while_open"]["max_ms"]
    verdicts = [
        (
            "cached content during the outage succeeds at 100%",
            goals["hot_success_during_outage_100pct"],
            "-" if hot_share is None else f"{hot_share:.2%}",
        ),
        (
            f"uncached requests fail in < {FAST_FAIL_S * 1000:g} ms while open",
            goals["cold_fail_fast_while_open"],
            "breaker never seen open" if max_open is None else f"max {max_open} ms",
        ),
        (
            f"normal within {RECOVERY_GOAL_S:g} s of the origin coming back",
            goals["recovered_within_5s"],
            "-" if steady is None else f"{steady:.2f} s",
        ),
    ]
    print("goals:")
    for text, passed, detail in verdicts:
        print(f"  {text:<52} {'PASS' if passed else 'FAIL'} ({detail})")
    print("metrics at the end:")
    for line in result["metrics"]:
        print(f"  {line}")


def _publish(
    tmp: Path, endpoint_url: str, args: argparse.Namespace, timeline: Timeline
) -> tuple[list[Track], list[Track]]:
    run = uuid.uuid4().hex[:6]
    total_s = timeline.before_s + timeline.outage_s + timeline.after_s
    needed = math.ceil(args.cold_rate * total_s * 1.2) + 20  # never-read slices to hand out
    per_track = math.ceil(needed / args.cold_tracks)
    hot = [Track(f"hot-{run}-{n}", os.urandom(args.hot_bytes)) for n in range(args.hot_tracks)]
    cold = [
        Track(f"cold-{run}-{n}", os.urandom(per_track * args.slice))
        for n in range(args.cold_tracks)
    ]
    _log(
        f"publishing {len(hot)} hot tracks of {args.hot_bytes} bytes and {len(cold)} cold tracks "
        f"of {per_track} slices ..."
    )
    publish_random(
        endpoint_url,
        BUCKET,
        tmp / "publish",
        {t.track_id: t.data for t in hot + cold},
        RENDITION,
        320,
    )
    return hot, cold


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before-s", type=float, default=5.0)
    parser.add_argument("--outage-s", type=float, default=30.0)
    parser.add_argument("--after-s", type=float, default=10.0)
    parser.add_argument("--hot-rate", type=float, default=50.0, help="hot requests per second")
    parser.add_argument("--cold-rate", type=float, default=10.0, help="cold requests per second")
    parser.add_argument("--hot-tracks", type=int, default=8)
    parser.add_argument(
        "--hot-bytes", type=parse_size, default=1024**2, help="size of each hot track"
    )
    parser.add_argument("--cold-tracks", type=int, default=8)
    parser.add_argument("--slice", type=parse_size, default=64 * 1024, help="cache.slice_bytes")
    parser.add_argument("--workers", type=int, default=1, help="server.workers")
    parser.add_argument("--origin-latency-ms", type=float, default=50.0)
    parser.add_argument("--request-timeout-s", type=float, default=15.0)
    parser.add_argument("--max-in-flight", type=int, default=500, help="per request stream")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="extra edge setting (repeatable)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON results only")
    args = parser.parse_args()
    if min(args.hot_rate, args.cold_rate) <= 0 or min(args.hot_tracks, args.cold_tracks) < 1:
        parser.error("rates and track counts must be positive")
    try:
        overrides = parse_overrides(args.set)
    except ValueError as exc:
        parser.error(str(exc))
    timeline = Timeline(args.before_s, args.outage_s, args.after_s)
    stop_on_sigterm()
    with local_origin(BUCKET, prefix="encore-bench-outage-") as (tmp, s3):
        hot, cold = _publish(tmp, s3.endpoint_url, args, timeline)
        upstream = urlsplit(s3.endpoint_url)
        proxy = CountingProxy(
            upstream.hostname or "127.0.0.1",
            upstream.port or 80,
            Faults(latency_s=args.origin_latency_ms / 1000),
        )
        proxy.start()
        sections: Sections = merge(
            {
                "server": {"workers": args.workers},
                "origin": {"endpoint_url": proxy.url, "bucket": BUCKET},
                "cache": {
                    "slice_bytes": args.slice,
                    "memory_bytes": "512MiB",
                    "disk_bytes": 0,
                    "disk_path": str(tmp / "cache"),
                },
                "edge": {"region": "SE"},
            },
            overrides,
        )
        try:
            with EdgeProcess(tmp, sections) as edge:
                load, changes, refused = asyncio.run(
                    _run_load(edge, proxy, hot, cold, args, timeline)
                )
                metrics_text = edge.metrics_text()
        finally:
            proxy.stop()
    result = _analyse(load, changes, refused, timeline, metrics_text)
    result["settings_not_supported"] = edge.dropped
    if args.json:
        print(
            json.dumps(
                {"settings": {**asdict(timeline), **vars(args)}, "result": result},
                indent=2,
                default=str,
            )
        )
    else:
        _report(result, timeline, args)


if __name__ == "__main__":
    try:
        main()
    except EdgeProcessError as exc:
        sys.exit(f"bench_origin_outage: {exc}")
    except KeyboardInterrupt:
        sys.exit("bench_origin_outage: interrupted; edge, proxy and S3 server stopped")
