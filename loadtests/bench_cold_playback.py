"""Cold sequential playback: listeners play never-requested tracks at real-time pace through an
edge whose origin answers each request 50 ms late; how many of their requests are cache hits
for each value of ``cache.prefetch_slices``, and what prefetching costs at the origin.

Goal: at least 95% of non-first requests (every request after a listener's first) are hits
(``X-Cache: HIT``), thanks to prefetch; the smallest prefetch depth that gets there, and its
waste, choose the default.

    python -m loadtests.bench_cold_playback [--prefetch 0,1,2,4] [--listeners 40] [--json]

Each listener is a player: it fetches the manifest, fills a start buffer (``--start-buffer-s``
of audio) with back-to-back ``--chunk`` range requests, then plays at ``--bitrate`` and asks
for the next chunk whenever its buffer falls below that target, for ``--play-s`` seconds of
audio (stalling, and counting the stall, if the buffer runs dry). Listeners start staggered
over ``--stagger-s``. Every prefetch value gets a fresh edge and fresh tracks; the origin is
``rclone serve s3`` behind the test TCP proxy (``Faults(latency_s=0.05)``), whose request
count is the ground truth for origin traffic. ``--speed 2`` plays twice as fast as real time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import re
import sys
import textwrap
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from loadtests.edge_process import (
    EdgeProcess,
    EdgeProcessError,
    Sections,
    merge,
    metric_sum,
    metric_values,
    parse_overrides,
    percentile,
    publish_random,
    stop_on_sigterm,
    supported,
)
from loadtests.local_origin import local_origin
from origin.sizes import parse_size
from tests.support.tcp_proxy import Faults, SeenRequest, TcpProxy

BUCKET = "audio"
RENDITION = "320"
GOAL_HIT_SHARE = 0.95
METRIC_PREFIXES = (
    "encore_prefetch_",
    "encore_fill_waits_total",
    "encore_origin_requests_total",
    "encore_origin_bytes_total",
    "encore_origin_breaker_state",
)
LEGEND = (
    "hit %: X-Cache HIT among non-first requests; fill %: among those sent back to back to fill "
    "the start buffer; play %: among those sent while playing; p95/p99: their latency; stalls: "
    "listeners whose buffer ran dry; origin GETs and bytes: counted at the proxy; origin/played: "
    "origin audio bytes per byte played; issued/used/wasted: encore_prefetch_* slices (wasted = "
    "evicted unread); unread: issued minus used."
)
_RANGE = re.compile(r"bytes=(\d+)-(\d+)")


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Plan:
    """What every listener does, from the command line."""

    bitrate_kbps: int
    chunk: int
    start_buffer_s: float
    play_s: float
    speed: float
    request_timeout_s: float

    @property
    def rate(self) -> float:
        """Bytes of audio played per second of audio."""
        return self.bitrate_kbps * 1000 / 8


@dataclass
class Sample:
    first: bool
    start: int
    latency_s: float
    status: int  # 0: no answer
    cache: str  # X-Cache, or "ERROR"
    tier: str
    ok: bool  # a complete 206 with the right bytes
    error: str = ""
    filling: bool = False  # sent back to back while filling the start buffer


@dataclass
class Listener:
    track_id: str
    samples: list[Sample] = field(default_factory=list)
    downloaded: int = 0
    played: float = 0.0
    stall_s: float = 0.0
    gave_up: str = ""


async def _get_range(
    session: aiohttp.ClientSession, url: str, data: bytes, start: int, end: int, first: bool
) -> Sample:
    began = time.perf_counter()
    status, cache, tier = 0, "ERROR", ""
    try:
        async with session.get(url, headers={"Range": f"bytes={start}-{end}"}) as response:
            status = response.status
            cache = response.headers.get("X-Cache", "NONE")
            tier = response.headers.get("X-Cache-Tier", "")
            body = await response.read()
        latency = time.perf_counter() - began
        if status != 206:
            return Sample(
                first,
                start,
                latency,
                status,
                "ERROR",
                tier,
                False,
                body[:120].decode(errors="replace"),
            )
        if body != data[start : end + 1]:
            return Sample(first, start, latency, status, cache, tier, False, "wrong bytes")
        return Sample(first, start, latency, status, cache, tier, True)
    except (aiohttp.ClientError, TimeoutError) as exc:
        latency = time.perf_counter() - began
        return Sample(first, start, latency, status, "ERROR", tier, False, type(exc).__name__)


async def _listen(
    session: aiohttp.ClientSession, base: str, track_id: str, data: bytes, plan: Plan, delay: float
) -> Listener:
    """One player: start buffer back to back, then a chunk whenever the buffer runs low."""
    await asyncio.sleep(delay)
    me = Listener(track_id)
    loop = asyncio.get_running_loop()
    async with session.get(f"{base}/v1/tracks/{track_id}") as response:
        await response.read()
        if response.status != 200:
            me.gave_up = f"manifest answered {response.status}"
            return me
    url = f"{base}/v1/tracks/{track_id}/{RENDITION}"
    pace = plan.rate * plan.speed  # bytes consumed per wall-clock second while playing
    target = plan.start_buffer_s * plan.rate
    goal = min(plan.play_s * plan.rate, len(data))
    playing_since: float | None = None
    last = loop.time()
    failures = 0
    while True:
        now = loop.time()
        if playing_since is not None:
            consumed = (now - last) * pace
            buffered = me.downloaded - me.played
            if consumed > buffered:
                me.stall_s += (consumed - buffered) / pace  # wall-clock seconds without audio
                consumed = buffered
            me.played += consumed
        last = now
        if me.played >= goal - 0.5:
            break
        buffered = me.downloaded - me.played
        if buffered >= target or me.downloaded >= len(data):
            # Sleep until the buffer falls below the target (or the audio we have runs out).
            wait = (buffered - target) / pace if me.downloaded < len(data) else buffered / pace
            await asyncio.sleep(max(wait, 0.0) + 0.001)
            continue
        start = me.downloaded
        end = min(start + plan.chunk, len(data)) - 1
        sample = await _get_range(session, url, data, start, end, first=not me.samples)
        sample.filling = playing_since is None
        me.samples.append(sample)
        if not sample.ok:
            failures += 1
            if failures >= 5:
                me.gave_up = f"5 failed requests, last: {sample.status} {sample.error}"
                break
            await asyncio.sleep(0.2)  # a player retries the same range
            continue
        me.downloaded = end + 1
        if playing_since is None and me.downloaded >= min(target, goal):
            playing_since = last = loop.time()
    me.played = min(me.played, goal)
    return me


async def _play_all(
    base: str, tracks: dict[str, bytes], plan: Plan, stagger_s: float
) -> list[Listener]:
    timeout = aiohttp.ClientTimeout(total=plan.request_timeout_s)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        count = len(tracks)
        return await asyncio.gather(
            *(
                _listen(session, base, track_id, data, plan, stagger_s * n / max(count, 1))
                for n, (track_id, data) in enumerate(tracks.items())
            )
        )


def _origin_traffic(seen: list[SeenRequest]) -> dict[str, int]:
    audio = [r for r in seen if r.method == "GET" and r.path.split("?")[0].endswith(".ogg")]
    manifests = [r for r in seen if r.method == "GET" and "manifest.json" in r.path]
    requested = 0
    for r in audio:
        match = _RANGE.fullmatch(r.headers.get("range", ""))
        if match:
            requested += int(match[2]) - int(match[1]) + 1
    return {
        "origin_requests": len(seen),
        "origin_audio_gets": len(audio),
        "origin_manifest_gets": len(manifests),
        "origin_audio_bytes": requested,
    }


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 1)


def _share(samples: list[Sample]) -> float | None:
    return round(sum(s.cache == "HIT" for s in samples) / len(samples), 4) if samples else None


def _difference(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def _summarise(
    prefetch: int, listeners: list[Listener], traffic: dict[str, int], metrics: dict[str, float]
) -> dict[str, Any]:
    samples = [s for one in listeners for s in one.samples]
    rest = [s for s in samples if not s.first]
    first = [s for s in samples if s.first]
    caches = Counter(s.cache for s in rest)
    played = sum(one.played for one in listeners)
    downloaded = sum(one.downloaded for one in listeners)
    later = [s.latency_s for s in rest]
    hit_share = caches["HIT"] / len(rest) if rest else 0.0
    filling = [s for s in rest if s.filling]
    playing = [s for s in rest if not s.filling]
    return {
        "prefetch_slices": prefetch,
        "listeners": len(listeners),
        "requests": len(samples),
        "non_first_requests": len(rest),
        "hit": caches["HIT"],
        "partial": caches["PARTIAL"],
        "miss": caches["MISS"],
        "failed": sum(not s.ok for s in samples),
        "wrong_bytes": sum(s.error == "wrong bytes" for s in samples),
        "hit_share": round(hit_share, 4),
        "start_buffer_requests": len(filling),
        "start_buffer_hit_share": _share(filling),
        "playing_requests": len(playing),
        "playing_hit_share": _share(playing),
        "meets_goal": hit_share >= GOAL_HIT_SHARE,
        "tiers": dict(Counter(s.tier for s in rest if s.tier)),
        "first_p50_ms": _ms(percentile([s.latency_s for s in first], 50)),
        "non_first_p50_ms": _ms(percentile(later, 50)),
        "non_first_p95_ms": _ms(percentile(later, 95)),
        "non_first_p99_ms": _ms(percentile(later, 99)),
        "non_first_max_ms": _ms(max(later, default=None)),
        "listeners_stalled": sum(one.stall_s > 0 for one in listeners),
        "stall_s_total": round(sum(one.stall_s for one in listeners), 2),
        "gave_up": [f"{one.track_id}: {one.gave_up}" for one in listeners if one.gave_up],
        "bytes_played": round(played),
        "bytes_downloaded": downloaded,
        **traffic,
        "origin_bytes_per_played": round(traffic["origin_audio_bytes"] / played, 3)
        if played
        else None,
        "origin_bytes_per_downloaded": round(traffic["origin_audio_bytes"] / downloaded, 3)
        if downloaded
        else None,
        "prefetch_issued": metric_sum(metrics, "encore_prefetch_issued_total"),
        "prefetch_used": metric_sum(metrics, "encore_prefetch_used_total"),
        "prefetch_wasted": metric_sum(metrics, "encore_prefetch_wasted_total"),
        # Wasted counts evictions only; with memory to spare, unread prefetches show up here.
        "prefetch_unread": _difference(
            metric_sum(metrics, "encore_prefetch_issued_total"),
            metric_sum(metrics, "encore_prefetch_used_total"),
        ),
        "metrics": metrics,
    }


def _run_one(
    prefetch: int,
    args: argparse.Namespace,
    plan: Plan,
    workdir: Path,
    endpoint_url: str,
    proxy: TcpProxy,
    overrides: Sections,
) -> dict[str, Any]:
    # Enough audio for the start buffer, the playing time and a deep prefetch past the end.
    track_bytes = math.ceil(
        (plan.start_buffer_s + plan.play_s) * plan.rate + (max(args.prefetch) + 4) * args.slice
    )
    run = uuid.uuid4().hex[:6]
    tracks = {f"cold-{run}-k{prefetch}-{n}": os.urandom(track_bytes) for n in range(args.listeners)}
    _log(f"prefetch_slices={prefetch}: publishing {len(tracks)} tracks of {track_bytes} bytes ...")
    publish_random(endpoint_url, BUCKET, workdir / "publish", tracks, RENDITION, plan.bitrate_kbps)
    sections = merge(
        {
            "server": {"workers": args.workers},
            "origin": {"endpoint_url": proxy.url, "bucket": BUCKET},
            "cache": {
                "slice_bytes": args.slice,
                "memory_bytes": args.memory,
                "disk_bytes": 0,
                "disk_path": str(workdir / f"cache-{prefetch}"),
                "prefetch_slices": prefetch,
            },
            "edge": {"region": "SE"},
        },
        overrides,
    )
    edge = EdgeProcess(workdir, sections, name=f"edge-prefetch-{prefetch}")
    with edge:
        seen_before = len(proxy.requests)
        _log(
            f"prefetch_slices={prefetch}: {args.listeners} listeners, {plan.play_s:g} s of audio "
            f"each at {plan.bitrate_kbps} kbps (x{plan.speed:g}) ..."
        )
        started = time.monotonic()
        # Bounded: staggered starts, playing time, and room for slow answers and stalls.
        limit_s = args.stagger_s + (plan.start_buffer_s + plan.play_s) / plan.speed + 120
        listeners = asyncio.run(
            asyncio.wait_for(_play_all(edge.base_url, tracks, plan, args.stagger_s), limit_s)
        )
        elapsed = time.monotonic() - started
        time.sleep(0.5)  # background prefetches still in flight reach the proxy and the metrics
        metrics = metric_values(edge.metrics_text(), METRIC_PREFIXES)
        traffic = _origin_traffic(proxy.requests[seen_before:])
    result = _summarise(prefetch, listeners, traffic, metrics)
    result["wall_s"] = round(elapsed, 1)
    result["settings_not_supported"] = edge.dropped
    return result


def _fmt(value: object, spec: str = "") -> str:
    if value is None:
        return "-"
    return format(value, spec) if spec else str(value)


def _pct(share: float | None) -> str:
    return "-" if share is None else f"{share * 100:.1f}"


def _table(results: list[dict[str, Any]]) -> str:
    header = (
        f"{'prefetch':>8} {'non-first':>9} {'hit %':>6} {'fill %':>6} {'play %':>6} {'partial':>7} "
        f"{'miss':>5} {'fail':>4} "
        f"{'p95 ms':>7} {'p99 ms':>7} {'stalls':>6} {'origin GETs':>11} {'origin/played':>13} "
        f"{'issued':>6} {'used':>6} {'unread':>6} {'wasted':>6}"
    )
    lines = [header, "-" * len(header)]
    for r in results:
        lines.append(
            f"{r['prefetch_slices']:>8} {r['non_first_requests']:>9} "
            f"{r['hit_share'] * 100:>6.1f} {_pct(r['start_buffer_hit_share']):>6} "
            f"{_pct(r['playing_hit_share']):>6} {r['partial']:>7} {r['miss']:>5} {r['failed']:>4} "
            f"{_fmt(r['non_first_p95_ms']):>7} {_fmt(r['non_first_p99_ms']):>7} "
            f"{r['listeners_stalled']:>6} {r['origin_audio_gets']:>11} "
            f"{_fmt(r['origin_bytes_per_played']):>13} {_fmt(r['prefetch_issued'], '.0f'):>6} "
            f"{_fmt(r['prefetch_used'], '.0f'):>6} {_fmt(r['prefetch_unread'], '.0f'):>6} "
            f"{_fmt(r['prefetch_wasted'], '.0f'):>6}"
        )
    return "\n".join(lines)


def _report(results: list[dict[str, Any]], args: argparse.Namespace, plan: Plan) -> None:
    print(
        f"cold playback: {args.listeners} listeners x {plan.play_s:g} s at {plan.bitrate_kbps} "
        f"kbps (x{plan.speed:g}), chunk {args.chunk} B, slice {args.slice} B, start buffer "
        f"{plan.start_buffer_s:g} s, origin latency {args.origin_latency_ms:g} ms"
    )
    print(_table(results))
    print(textwrap.fill(LEGEND, 100))
    for r in results:
        notes = []
        if r["settings_not_supported"]:
            notes.append(
                f"not supported by this edge (dropped): {', '.join(r['settings_not_supported'])}"
            )
        if r["gave_up"]:
            notes.append(f"{len(r['gave_up'])} listeners gave up, e.g. {r['gave_up'][0]}")
        if r["wrong_bytes"]:
            notes.append(f"{r['wrong_bytes']} responses had WRONG BYTES")
        notes.append(
            f"first request p50 {_fmt(r['first_p50_ms'])} ms, later p50 "
            f"{_fmt(r['non_first_p50_ms'])} ms, max {_fmt(r['non_first_max_ms'])} ms; "
            f"tiers {r['tiers']}; origin manifest GETs {r['origin_manifest_gets']}; "
            f"stalled {r['stall_s_total']} s in total; wall {r['wall_s']} s"
        )
        print(f"  prefetch {r['prefetch_slices']}: " + "\n    ".join(notes))
        for series, value in r["metrics"].items():
            print(f"    {series} {value:g}")
    reaching = [r["prefetch_slices"] for r in results if r["meets_goal"]]
    if reaching:
        best = min(reaching)
        chosen = next(r for r in results if r["prefetch_slices"] == best)
        print(
            f"smallest prefetch_slices reaching {GOAL_HIT_SHARE:.0%} hits: {best} (hit share "
            f"{chosen['hit_share']:.1%}, origin bytes {chosen['origin_bytes_per_played']} x played)"
        )
    else:
        print(f"no prefetch value reached {GOAL_HIT_SHARE:.0%} hits among non-first requests")


def _int_list(text: str) -> list[int]:
    values = sorted({int(v) for v in text.split(",") if v.strip()})
    if not values or min(values) < 0:
        raise argparse.ArgumentTypeError("expected non-negative integers such as 0,1,2,4")
    return values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--prefetch",
        type=_int_list,
        default=[0, 1, 2, 4],
        help="values of cache.prefetch_slices to sweep",
    )
    parser.add_argument("--listeners", type=int, default=40)
    parser.add_argument("--play-s", type=float, default=40.0, help="seconds of audio each plays")
    parser.add_argument("--start-buffer-s", type=float, default=10.0, help="buffer target")
    parser.add_argument("--bitrate", type=int, default=320, help="kbps of the rendition")
    parser.add_argument(
        "--chunk", type=parse_size, default=64 * 1024, help="bytes per range request"
    )
    parser.add_argument("--slice", type=parse_size, default=64 * 1024, help="cache.slice_bytes")
    parser.add_argument("--memory", type=parse_size, default=1024**3, help="cache.memory_bytes")
    parser.add_argument("--stagger-s", type=float, default=4.0, help="listener starts spread")
    parser.add_argument("--speed", type=float, default=1.0, help="playback speed (1 = real time)")
    parser.add_argument("--origin-latency-ms", type=float, default=50.0)
    parser.add_argument("--workers", type=int, default=1, help="server.workers")
    parser.add_argument("--request-timeout-s", type=float, default=30.0)
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="extra edge setting, e.g. cache.prefetch_concurrency=8 (repeatable; wins over the "
        "swept value)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON results only")
    args = parser.parse_args()
    if args.speed <= 0 or args.listeners < 1 or args.chunk < 1:
        parser.error("--speed, --listeners and --chunk must be positive")
    try:
        overrides = parse_overrides(args.set)
    except ValueError as exc:
        parser.error(str(exc))
    plan = Plan(
        args.bitrate, args.chunk, args.start_buffer_s, args.play_s, args.speed,
        args.request_timeout_s,
    )  # fmt: skip
    if not supported("cache", "prefetch_slices"):
        _log("note: this edge has no cache.prefetch_slices yet; every run uses its behaviour")
    stop_on_sigterm()
    results = []
    with local_origin(BUCKET, prefix="encore-bench-cold-") as (tmp, s3):
        upstream = urlsplit(s3.endpoint_url)
        proxy = TcpProxy(
            upstream.hostname or "127.0.0.1",
            upstream.port or 80,
            Faults(latency_s=args.origin_latency_ms / 1000),
        ).start()
        try:
            for prefetch in args.prefetch:
                results.append(
                    _run_one(prefetch, args, plan, tmp, s3.endpoint_url, proxy, overrides)
                )
                r = results[-1]
                _log(
                    f"prefetch_slices={prefetch}: hit share {r['hit_share']:.1%} of "
                    f"{r['non_first_requests']} non-first requests, p99 "
                    f"{_fmt(r['non_first_p99_ms'])} ms, {r['origin_audio_gets']} origin GETs"
                )
        finally:
            proxy.stop()
    if args.json:
        print(
            json.dumps(
                {"settings": {**asdict(plan), **vars(args)}, "results": results},
                indent=2,
                default=str,
            )
        )
    else:
        _report(results, args, plan)


if __name__ == "__main__":
    try:
        main()
    except EdgeProcessError as exc:
        sys.exit(f"bench_cold_playback: {exc}")
    except KeyboardInterrupt:
        sys.exit("bench_cold_playback: interrupted; edge, proxy and S3 server stopped")
