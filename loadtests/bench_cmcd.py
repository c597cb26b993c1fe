"""CMCD at the edge: (a) what reading a player's report costs per request, and (b) what the
``nrr`` prefetch hint does for cold playback next to the sequential look-ahead.

    python -m loadtests.bench_cmcd [--parse-only] [--listeners 16] [--play-s 24] [--speed 4]

(a) times ``edge.telemetry.cmcd`` on what players send (dash.js's query argument for an audio
range, CTA-5004's every-key example, Media3's four headers, a listener of ``locustfile.py``,
malformed input), in µs per request and as a ratio to a plain ``dict.get`` measured in the
same run (the cost of one header lookup: what a request without CMCD pays, at most).

(b) plays cold tracks through a real edge (``bench_cold_playback``'s setup: ``rclone serve
s3`` behind a proxy 50 ms away, one fresh edge and fresh tracks per run), once without CMCD
(the look-ahead alone, ``cache.prefetch_slices``) and once with each range request naming the
next in ``nrr``; for listeners that play straight through, and for listeners that skip
ahead every few chunks (a skipped intro, a chapter jump the player knows of), where the
look-ahead guesses wrong and the hint does not.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import sys
import time
import timeit
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from edge.http.request import Request
from edge.telemetry import cmcd
from loadtests import listener_cmcd
from loadtests.bench_cold_playback import (
    BUCKET,
    METRIC_PREFIXES,
    RENDITION,
    Listener,
    Plan,
    _get_range,
    _origin_traffic,
    _summarise,
    _table,
)
from loadtests.edge_process import (
    EdgeProcess,
    Sections,
    metric_values,
    publish_random,
    stop_on_sigterm,
)
from loadtests.local_origin import local_origin
from tests.support.tcp_proxy import Faults, TcpProxy

MODES = ("straight", "straight+nrr", "skip", "skip+nrr")
SID = "6e2fb550-c457-11e9-bb97-0800200c9a66"
DASH_AUDIO: dict[str, listener_cmcd.CmcdValue] = {
    "bl": 21300, "br": 160, "cid": "t-0001", "d": 4004, "dl": 18500, "mtp": 48100,
    "nrr": "262144-524287", "ot": "a", "sf": "d", "sid": SID, "st": "v", "tb": 320,
}  # fmt: skip
SPEC_EVERY_KEY: dict[str, listener_cmcd.CmcdValue] = {
    "bl": 21300, "br": 3200, "bs": True, "cid": "faec5fc2-ac30-11ea-bb37-0242ac130002",
    "d": 4004, "dl": 18500, "mtp": 48100, "nor": "../300kbps/track.m4v",
    "nrr": "12323-48763", "ot": "v", "pr": 1.08, "rtp": 12000, "sf": "d", "sid": SID,
    "st": "v", "su": True, "tb": 6000,
}  # fmt: skip
LISTENER: dict[str, listener_cmcd.CmcdValue] = {
    "bl": 8000, "br": 160, "cid": "t-0001", "d": 2000, "dl": 8000, "mtp": 5200,
    "nrr": "40960-81919", "ot": "a", "pr": 16, "sf": "o", "sid": SID, "st": "v", "tb": 320,
}  # fmt: skip
MEDIA3_HEADERS = {
    "cmcd-object": "br=160,d=10000,ot=a,tb=320",
    "cmcd-request": 'bl=4200,mtp=2100,nrr="262144-"',
    "cmcd-session": f'cid="t-0001",sf=d,sid="{SID}",st=v',
    "cmcd-status": "bs",
}


def _request(target: str, headers: dict[str, str]) -> Request:
    return Request(
        "GET", target, version="1.1", headers=headers, repeated=None, remote="127.0.0.1",
        keep_alive=True, started=0.0,
    )  # fmt: skip


def _per_call_us(call: Callable[[], object], number: int) -> float:
    return min(timeit.repeat(call, number=number, repeat=7)) / number * 1e6


def bench_parse(number: int) -> None:
    path = "/v1/tracks/t-0001/160?exp=1795278700&kid=k1&sig=" + "A" * 43
    cases: dict[str, Request] = {
        "dash.js audio range (query, 12 keys)": _request(
            listener_cmcd.with_query_argument(path, DASH_AUDIO), {}
        ),
        "CTA-5004 example (query, 17 keys)": _request(
            listener_cmcd.with_query_argument(path, SPEC_EVERY_KEY), {}
        ),
        "Media3 (four headers, 12 keys)": _request(path, MEDIA3_HEADERS),
        "locustfile listener (query, 13 keys)": _request(
            listener_cmcd.with_query_argument(path, LISTENER), {}
        ),
        "malformed (unclosed string, bad types)": _request(
            f"{path}&CMCD=bl%3Dfast%2Cbr%3D-1%2Csid%3D%22open", {}
        ),
        "too long (2 KiB)": _request(f"{path}&CMCD={'x%2C' * 700}", {}),
    }
    headers = {"host": "edge", "range": "bytes=0-65535", "user-agent": "dash.js"}
    baseline = _per_call_us(lambda: headers.get("cmcd-request"), number * 10)
    print(
        f"(a) parsing one request's CMCD, best of 7 x {number}; baseline dict.get "
        f"{baseline * 1000:.0f} ns"
    )
    print(f"{'report':<42} {'µs/parse':>9} {'x dict.get':>11}  ignored")
    for name, request in cases.items():
        report = cmcd.from_request(request)
        assert report is not None
        per_parse = _per_call_us(functools.partial(cmcd.from_request, request), number)
        reasons = ",".join(sorted(p.value for p in report.ignored)) or "-"
        print(f"{name:<42} {per_parse:>9.2f} {per_parse / baseline:>11.0f}  {reasons}")
    plain = _request(path, headers)
    no_cmcd = _per_call_us(lambda: cmcd.from_request(plain), number * 10)
    print(f"{'no CMCD (the check alone)':<42} {no_cmcd:>9.2f} {no_cmcd / baseline:>11.1f}")


# --- (b) cold playback ---------------------------------------------------------------------------


async def _listen(
    session: aiohttp.ClientSession, base: str, track_id: str, data: bytes, plan: Plan,
    delay: float, *, hints: bool, skip_every: int, skip_bytes: int,
) -> Listener:  # fmt: skip
    """``bench_cold_playback``'s player, with a skip of ``skip_bytes`` after every
    ``skip_every`` chunks (0: none), and with ``hints`` the next range in CMCD's ``nrr``."""
    await asyncio.sleep(delay)
    me = Listener(track_id)
    url = f"{base}/v1/tracks/{track_id}/{RENDITION}"
    pace, target = plan.rate * plan.speed, plan.start_buffer_s * plan.rate
    goal = plan.play_s * plan.rate
    loop = asyncio.get_running_loop()
    position, playing_since, last = 0, None, loop.time()
    while me.played < goal - 0.5 and position < len(data):
        now = loop.time()
        if playing_since is not None:
            consumed = min((now - last) * pace, me.downloaded - me.played)
            me.stall_s += max((now - last) * pace - consumed, 0) / pace
            me.played += consumed
        last = now
        buffered = me.downloaded - me.played
        if buffered >= target:
            await asyncio.sleep((buffered - target) / pace + 0.001)
            continue
        end = min(position + plan.chunk, len(data)) - 1
        following = end + 1
        if skip_every and (len(me.samples) + 1) % skip_every == 0:
            following += skip_bytes
        asked = url
        if hints and following < len(data):
            next_end = min(following + plan.chunk, len(data)) - 1
            asked = listener_cmcd.with_query_argument(
                url, {"nrr": f"{following}-{next_end}", "sid": track_id, "br": 320}
            )
        sample = await _get_range(session, asked, data, position, end, first=not me.samples)
        sample.filling = playing_since is None
        me.samples.append(sample)
        if not sample.ok:
            me.gave_up = f"{sample.status} {sample.error}"
            break
        me.downloaded += end - position + 1
        position = following
        if playing_since is None and me.downloaded >= target:
            playing_since = last = loop.time()
    return me


def _run_one(
    mode: str, args: argparse.Namespace, plan: Plan, tmp: Path, s3_url: str, proxy: TcpProxy
) -> dict[str, Any]:
    hints, skip_every = mode.endswith("+nrr"), args.skip_every if "skip" in mode else 0
    skips = int(plan.play_s * plan.rate / plan.chunk / max(skip_every, 1)) + 2
    size = int((plan.start_buffer_s + plan.play_s) * plan.rate) + skips * args.skip_bytes
    size += 8 * plan.chunk
    run = uuid.uuid4().hex[:6]
    tracks = {f"cmcd-{run}-{n}": os.urandom(size) for n in range(args.listeners)}
    publish_random(s3_url, BUCKET, tmp / "publish", tracks, RENDITION, plan.bitrate_kbps)
    sections: Sections = {
        # One worker: with two, a listener's next request may reach the one that did not
        # prefetch (there is no disk tier to share), and the runs measure that instead.
        "server": {"workers": 1},
        "origin": {"endpoint_url": proxy.url, "bucket": BUCKET},
        "cache": {"slice_bytes": args.chunk, "memory_bytes": 1024**3, "disk_bytes": 0,
                  "disk_path": str(tmp / f"cache-{run}"), "prefetch_slices": args.prefetch},
        "edge": {"region": "SE"},
    }  # fmt: skip
    with EdgeProcess(tmp, sections, name=f"edge-{run}") as edge:
        seen = len(proxy.requests)

        async def play() -> list[Listener]:
            timeout = aiohttp.ClientTimeout(total=plan.request_timeout_s)
            async with aiohttp.ClientSession(timeout=timeout) as session:
                return await asyncio.gather(
                    *(_listen(session, edge.base_url, track, data, plan, 2.0 * n / len(tracks),
                              hints=hints, skip_every=skip_every, skip_bytes=args.skip_bytes)
                      for n, (track, data) in enumerate(tracks.items()))
                )  # fmt: skip

        listeners = asyncio.run(play())
        time.sleep(0.5)  # prefetches still in flight reach the proxy and the metrics
        prefixes = (*METRIC_PREFIXES, "encore_player_hints_total")
        metrics = metric_values(edge.metrics_text(), prefixes)
        traffic = _origin_traffic(proxy.requests[seen:])
    result = _summarise(args.prefetch, listeners, traffic, metrics)
    result["mode"] = mode
    return result


def bench_playback(args: argparse.Namespace) -> None:
    plan = Plan(320, args.chunk, 4.0, args.play_s, args.speed, 30.0)
    modes = args.modes.split(",")
    results = []
    with local_origin(BUCKET, prefix="encore-bench-cmcd-") as (tmp, s3):
        upstream = urlsplit(s3.endpoint_url)
        proxy = TcpProxy(upstream.hostname or "127.0.0.1", upstream.port or 80,
                         Faults(latency_s=0.05)).start()  # fmt: skip
        try:
            for mode in modes:
                print(f"(b) {mode} ...", file=sys.stderr, flush=True)
                results.append(_run_one(mode, args, plan, tmp, s3.endpoint_url, proxy))
        finally:
            proxy.stop()
    print(
        f"\n(b) cold playback: {args.listeners} listeners x {plan.play_s:g} s at 320 kbps "
        f"(x{plan.speed:g}), chunk = slice = {args.chunk} B, prefetch_slices {args.prefetch}, "
        f"skip {args.skip_bytes} B every {args.skip_every} chunks, origin 50 ms away"
    )
    table = _table(results).splitlines()
    print(f"{'mode':<13} {table[0]}\n{'-' * 13} {table[1]}")
    for result, line in zip(results, table[2:], strict=True):
        print(f"{result['mode']:<13} {line}")
    for result in results:
        hints = {k: v for k, v in result["metrics"].items() if "player_hints" in k}
        print(f"  {result['mode']}: {hints or 'no hints'}; stalled {result['stall_s_total']} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--number", type=int, default=2000, help="parses per timing (2000)")
    parser.add_argument("--parse-only", action="store_true", help="only (a)")
    parser.add_argument("--listeners", type=int, default=16)
    parser.add_argument("--play-s", type=float, default=24.0, help="seconds of audio each plays")
    parser.add_argument("--speed", type=float, default=4.0, help="playback speed (x real time)")
    parser.add_argument("--chunk", type=int, default=64 * 1024, help="bytes per range = slice")
    parser.add_argument("--prefetch", type=int, default=2, help="cache.prefetch_slices")
    parser.add_argument("--skip-every", type=int, default=4, help="chunks between skips")
    parser.add_argument("--skip-bytes", type=int, default=5 * 64 * 1024, help="bytes skipped")
    parser.add_argument(
        "--modes", default=",".join(MODES), help=f"runs, in order ({','.join(MODES)})"
    )
    args = parser.parse_args()
    if not set(args.modes.split(",")) <= set(MODES):
        parser.error(f"--modes takes {', '.join(MODES)}")
    bench_parse(args.number)
    if not args.parse_only:
        stop_on_sigterm()
        bench_playback(args)


if __name__ == "__main__":
    main()
