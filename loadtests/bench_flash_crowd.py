"""Flash crowd: many clients ask for the same cold slice at once; the edge against nginx.

500 clients (``--clients``) request ``bytes=0-262143`` (one 256 KiB slice) of an object
neither cache holds, at the same instant. Each cache reaches the origin through its own
fault-injecting TCP proxy (``tests.support.tcp_proxy``) that adds 50 ms (``--latency-ms``)
before each request and counts them: the proxy's count, not the cache's own metrics, is the
number of origin GETs. Acceptance for the edge: at most one origin GET for the slice per
worker, and a client TTFB p99 of at most the origin latency + 25 ms.

The contenders, each with ``--workers`` processes (default 2), in the same run:

* the Encore edge (``python -m edge serve``) with 256 KiB slices, memory tier only, look-ahead
  prefetch off where the build has ``cache.prefetch_slices`` (only the demanded slice is
  fetched), no access log (as nginx here), reading the bucket through the S3 API
  (``rclone serve s3`` without ETag hashing, which would hash each fresh 4 MiB object on its
  first GET, ~7 ms that S3 does not spend);
* nginx ``proxy_cache`` with ``slice 256k`` and ``proxy_cache_lock on`` (its lock waiters
  re-check every 500 ms), reading the same bucket folder through ``rclone serve http``, since
  nginx cannot sign S3 requests.

Each round gives each cache a fresh object (4 MiB of random bytes, published as a track), so
every round is cold; the order alternates between rounds. The edge's manifest for that track
is fetched first on every worker (the proxy's count shows when each has it): the crowd then
measures the cold audio slice, not the manifest. The clients (``loadtests.crowd_client``,
raw asyncio protocols on uvloop, spread over ``--client-procs`` processes) open and prime
their keep-alive connections first, then all send at one instant (the sends spread over
2-7 ms, the "spread" column); each records, from its own send, the first and the last body
byte, and checks the status (206) and every byte. The acceptance line lists every round's
p99 and the p99 of all rounds pooled; ``--check`` wants every round within the budget. Right
after the cold crowd the same crowd asks again for the now cached slice: that warm TTFB is the
floor the client and the cache add on this machine, reported next to the cold numbers. It is
not small: moving 500 x 256 KiB through loopback on 2 shared cores takes tens of milliseconds
whoever serves it, so read a cold p99 against the warm one of the same cache.

    python -m loadtests.bench_flash_crowd [--clients 500] [--rounds 3] [--workers 2]
        [--latency-ms 50] [--client-procs 2] [--json] [--check] [--keep-logs DIR]

``--json`` prints the results as JSON on stdout (the table goes to stderr); ``--check`` exits
1 when the edge misses the acceptance targets; ``--keep-logs`` keeps the edge's, nginx's and
rclone's logs. Needs nginx with the slice module (Debian's nginx-light) on PATH.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

from loadtests.crowd_client import Crowd, Sample
from loadtests.edge_process import percentile, publish_random
from loadtests.local_origin import local_origin, need_tool, serve_folder_over_http, stop_processes
from origin import layout
from origin.local_s3 import LocalS3, free_port
from origin.settings import CacheSettings
from tests.support.tcp_proxy import Faults, SeenRequest, TcpProxy

BUCKET = "audio"
RENDITION = "320"
OBJECT_BYTES = 4 * 1024**2
SLICE_BYTES = 256 * 1024
RANGE = f"bytes=0-{SLICE_BYTES - 1}"
TTFB_BUDGET_S = 0.025  # over the origin latency, for the edge's p99
SETTLE_S = 0.3  # after a crowd, before counting origin GETs (late or background fetches)
METRIC_PREFIXES = (
    "encore_fill_waits_total",
    "encore_origin_duplicate_fetches_total",
    'encore_origin_requests_total{operation="get_range"',
)
CACHES = ("edge", "nginx")

NGINX_CONF = """
user root;
worker_processes {workers};
worker_rlimit_nofile 16384;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    proxy_cache_path {tmp}/nginx-cache levels=1:2 keys_zone=audio:64m max_size=2g inactive=1h;
    proxy_temp_path {tmp}/nginx-temp;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location = /healthz {{ return 200 "ok\\n"; }}
        location / {{
            slice 256k;
            proxy_cache audio;
            proxy_cache_key $uri$slice_range;
            proxy_set_header Range $slice_range;
            proxy_cache_valid 200 206 1h;
            proxy_cache_lock on;
            proxy_cache_lock_timeout 5s;  # nginx's defaults, spelled out
            proxy_cache_lock_age 5s;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass http://127.0.0.1:{origin_port};
        }}
    }}
}}
"""


@dataclass(frozen=True, slots=True)
class Published:
    track_id: str
    key: str  # the rendition's object key in the bucket
    slice_data: bytes  # the bytes of RANGE


@dataclass(frozen=True, slots=True)
class Contender:
    name: str
    port: int
    proxy: TcpProxy

    def path(self, obj: Published) -> str:
        if self.name == "edge":
            return f"/v1/tracks/{obj.track_id}/{RENDITION}"
        return f"/{obj.key}"


@dataclass(slots=True)
class Round:
    cache: str
    number: int
    slice_gets: int  # origin GETs whose range starts in the measured slice
    object_gets: int  # origin GETs of the object, any range
    warm_extra_gets: int  # origin GETs of the object during the warm crowd
    origin_ranges: list[str]
    cold: list[Sample]
    warm: list[Sample]


def _fetch(url: str, timeout_s: float = 10) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout_s) as response:
        return bytes(response.read())


def _wait(url: str, log: Path, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            _fetch(url, timeout_s=2)
            return
        except (urllib.error.URLError, OSError):
            time.sleep(0.1)
    tail = log.read_text(errors="replace").splitlines()[-15:] if log.exists() else []
    sys.exit("\n".join([f"bench_flash_crowd: {url} did not come up in {timeout_s:g} s", *tail]))


def _publish(s3: LocalS3, workdir: Path, names: list[str]) -> dict[str, Published]:
    """One fresh track per name: OBJECT_BYTES of random bytes with a one-point seek table."""
    tracks = {f"crowd-{name}-{uuid.uuid4().hex[:8]}": os.urandom(OBJECT_BYTES) for name in names}
    keys = publish_random(s3.endpoint_url, BUCKET, workdir, tracks, rendition=RENDITION)
    return {
        name: Published(track_id, keys[track_id], data[:SLICE_BYTES])
        for name, (track_id, data) in zip(names, tracks.items(), strict=True)
    }


def _object_gets(proxy: TcpProxy, key: str) -> list[SeenRequest]:
    return [
        r for r in list(proxy.requests) if r.method == "GET" and r.path.split("?")[0].endswith(key)
    ]


def _starts_in_slice(request: SeenRequest) -> bool:
    """A GET without a Range, or one whose range starts inside the measured slice."""
    header = request.headers.get("range", "")
    if not header.startswith("bytes="):
        return True
    first = header[len("bytes=") :].split("-", 1)[0]
    return first.isdigit() and int(first) < SLICE_BYTES


def _warm_manifest(edge: Contender, obj: Published, workers: int) -> None:
    """Fetch the track's manifest until every worker has it: new connections land on random
    workers (SO_REUSEPORT), and the proxy counts one origin GET per worker that loads it."""
    key = layout.manifest_key(obj.track_id)
    url = f"http://127.0.0.1:{edge.port}/v1/tracks/{obj.track_id}"
    for _ in range(200):
        if len(_object_gets(edge.proxy, key)) >= workers:
            return
        _fetch(url)
    print(f"warning: the manifest reached fewer than {workers} workers", file=sys.stderr)


def _measure(
    crowd: Crowd, cache: Contender, obj: Published, clients: int, workers: int, number: int
) -> Round:
    if cache.name == "edge":
        _warm_manifest(cache, obj, workers)
    if _object_gets(cache.proxy, obj.key):
        sys.exit(f"bench_flash_crowd: {cache.name} fetched the object before the crowd")
    path = cache.path(obj)
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{cache.port}\r\nRange: {RANGE}\r\n\r\n"
    crowd.open("127.0.0.1", cache.port, clients, "/healthz")
    cold = crowd.run(request.encode(), obj.slice_data, status=206)
    time.sleep(SETTLE_S)
    after_cold = _object_gets(cache.proxy, obj.key)
    warm = crowd.run(request.encode(), obj.slice_data, status=206)
    time.sleep(SETTLE_S)
    after_warm = _object_gets(cache.proxy, obj.key)
    crowd.close()  # on failure, the crowd processes are stopped, connections and all
    return Round(
        cache=cache.name,
        number=number,
        slice_gets=sum(1 for r in after_cold if _starts_in_slice(r)),
        object_gets=len(after_cold),
        warm_extra_gets=len(after_warm) - len(after_cold),
        origin_ranges=sorted({r.headers.get("range", "(none)") for r in after_cold}),
        cold=cold,
        warm=warm,
    )


# --- statistics and the report ------------------------------------------------------------------


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 1)


def _summary(samples: list[Sample]) -> dict[str, Any]:
    good = [s for s in samples if not s.error]
    ttfb = [s.ttfb_s for s in good if s.ttfb_s is not None]
    last = [s.last_byte_s for s in good if s.last_byte_s is not None]
    errors: dict[str, int] = {}
    for s in samples:
        if s.error:
            errors[s.error] = errors.get(s.error, 0) + 1
    sent = [s.sent_at for s in samples]
    return {
        "requests": len(samples),
        "errors": sum(errors.values()),
        "error_kinds": errors,
        "ttfb_ms": {"min": _ms(min(ttfb, default=None))}
        | {f"p{p}": _ms(percentile(ttfb, p)) for p in (50, 90, 99)}
        | {"max": _ms(max(ttfb, default=None))},
        "last_byte_ms": {"p50": _ms(percentile(last, 50)), "p99": _ms(percentile(last, 99))},
        "send_spread_ms": _ms(max(sent) - min(sent)) if sent else None,
    }


def _pooled(crowds: list[list[Sample]]) -> dict[str, Any]:
    """Every round's samples together; the send spread is the widest of one crowd's."""
    summary = _summary([s for samples in crowds for s in samples])
    spreads = [_summary(samples)["send_spread_ms"] for samples in crowds]
    summary["send_spread_ms"] = max((s for s in spreads if s is not None), default=None)
    return summary


def _fmt(value: object) -> str:
    return "-" if value is None else str(value)


def _table_row(label: str, gets: str, summary: dict[str, Any]) -> str:
    t, last = summary["ttfb_ms"], summary["last_byte_ms"]
    return (
        f"{label:<14}{gets:>12}{_fmt(t['min']):>8}{_fmt(t['p50']):>8}{_fmt(t['p90']):>8}"
        f"{_fmt(t['p99']):>8}"
        f"{_fmt(t['max']):>9}{_fmt(last['p99']):>10}{summary['errors']:>8}"
        f"{_fmt(summary['send_spread_ms']):>9}"
    )


def _report(
    rounds: list[Round], args: argparse.Namespace, prefetch_off: bool, metric_lines: list[str]
) -> dict[str, Any]:
    caches: dict[str, Any] = {}
    for name in CACHES:
        mine = [r for r in rounds if r.cache == name]
        caches[name] = {
            "cold": _pooled([r.cold for r in mine]),
            "warm": _pooled([r.warm for r in mine]),
            "rounds": [
                {
                    "round": r.number,
                    "origin_gets_slice": r.slice_gets,
                    "origin_gets_object": r.object_gets,
                    "origin_gets_during_warm": r.warm_extra_gets,
                    "origin_ranges": r.origin_ranges,
                    "cold": _summary(r.cold),
                    "warm": _summary(r.warm),
                }
                for r in mine
            ],
            "max_origin_gets_slice": max(r.slice_gets for r in mine),
        }
    edge_p99 = caches["edge"]["cold"]["ttfb_ms"]["p99"]
    nginx_p99 = caches["nginx"]["cold"]["ttfb_ms"]["p99"]
    ratio = round(nginx_p99 / edge_p99, 2) if edge_p99 and nginx_p99 else None
    round_p99s = sorted(r["cold"]["ttfb_ms"]["p99"] or math.inf for r in caches["edge"]["rounds"])
    worst_round_p99 = round_p99s[-1] if round_p99s else math.inf
    target_ms = args.latency_ms + TTFB_BUDGET_S * 1000
    checks = {
        "origin_gets_per_worker": caches["edge"]["max_origin_gets_slice"] <= args.workers,
        "ttfb_p99_within_budget": worst_round_p99 <= target_ms,
        "no_errors": not caches["edge"]["cold"]["errors"] and not caches["edge"]["warm"]["errors"],
    }
    return {
        "clients": args.clients,
        "rounds": args.rounds,
        "workers": args.workers,
        "client_processes": args.client_procs,
        "origin_latency_ms": args.latency_ms,
        "range": RANGE,
        "object_bytes": OBJECT_BYTES,
        "edge_prefetch_off": prefetch_off,
        "caches": caches,
        "nginx_to_edge_ttfb_p99": ratio,
        "edge_ttfb_p99_target_ms": target_ms,
        "edge_round_p99s_ms": round_p99s,
        "edge_checks": checks,
        "edge_metrics": metric_lines,
    }


def _print_table(result: dict[str, Any], out: TextIO) -> None:
    def say(line: str = "") -> None:
        print(line, file=out)

    say(
        f"flash crowd: {result['clients']} clients x {result['range']} of a cold "
        f"{result['object_bytes'] // 1024**2} MiB object; origin +{result['origin_latency_ms']}"
        f" ms; {result['workers']} workers per cache; {result['rounds']} rounds; "
        f"{result['client_processes']} client processes"
    )
    if not result["edge_prefetch_off"]:
        say("(this edge has no cache.prefetch_slices setting: its look-ahead, if any, is on)")
    header = (
        f"{'':<14}{'origin GETs':>12}{'ttfb min':>9}{'p50':>7}{'p90':>8}{'p99':>8}{'max':>9}"
        f"{'last p99':>10}{'errors':>8}{'spread':>9}"
    )
    for phase, title in (
        ("cold", "cold slice (ms from each client's send)"),
        ("warm", "warm slice, same crowd right after: the client + cache floor"),
    ):
        say()
        say(title)
        say(header)
        for name in CACHES:
            cache = result["caches"][name]
            for r in cache["rounds"]:
                gets = (
                    f"{r['origin_gets_slice']}/{r['origin_gets_object']}"
                    if phase == "cold"
                    else f"+{r['origin_gets_during_warm']}"
                )
                say(_table_row(f"{name} round {r['round']}", gets, r[phase]))
            say(_table_row(f"{name} all", "", cache[phase]))
    say()
    say("origin GETs: slice/object, as each cache's origin proxy counted them")
    say("spread: from the crowd's first send to its last")
    for name in CACHES:
        for r in result["caches"][name]["rounds"]:
            kinds = r["cold"]["error_kinds"] | r["warm"]["error_kinds"]
            if kinds:
                say(f"{name} round {r['round']} errors: {kinds}")
    say(f"nginx p99 / edge p99 (cold TTFB): {_fmt(result['nginx_to_edge_ttfb_p99'])}")
    checks = result["edge_checks"]
    cold = result["caches"]["edge"]["cold"]
    say(
        f"edge acceptance: origin GETs for the slice <= {result['workers']} per round: "
        f"{'ok' if checks['origin_gets_per_worker'] else 'FAIL'} "
        f"(max {result['caches']['edge']['max_origin_gets_slice']}); "
        f"TTFB p99 <= {result['edge_ttfb_p99_target_ms']:g} ms in every round: "
        f"{'ok' if checks['ttfb_p99_within_budget'] else 'FAIL'} "
        f"(rounds' p99 {', '.join(map(_fmt, result['edge_round_p99s_ms']))}; "
        f"all rounds pooled {cold['ttfb_ms']['p99']}); "
        f"errors: {'ok' if checks['no_errors'] else 'FAIL'}"
    )
    say("edge metrics:" if result["edge_metrics"] else "edge metrics: (none of the fill metrics)")
    for line in result["edge_metrics"]:
        say(f"  {line}")


# --- processes ----------------------------------------------------------------------------------


def _edge_config(path: Path, port: int, origin_url: str, workers: int, cache_dir: Path) -> bool:
    """Write the edge's TOML; True when look-ahead prefetch could be switched off."""
    prefetch = "prefetch_slices" in {f.name for f in dataclasses.fields(CacheSettings)}
    path.write_text(
        f'[server]\nhost = "127.0.0.1"\nport = {port}\nworkers = {workers}\n'
        "access_log = false\n"  # as nginx's access_log off
        f'[origin]\nendpoint_url = "{origin_url}"\nbucket = "{BUCKET}"\n'
        f'[cache]\nslice_bytes = "256KiB"\nmemory_bytes = "256MiB"\n'
        f'disk_path = "{cache_dir}"\ndisk_bytes = 0\n'
        + ("prefetch_slices = 0\n" if prefetch else "")
        + '[edge]\nregion = "SE"\nmanifest_ttl_s = 3600\n'
    )
    return prefetch


def _edge_metrics(port: int) -> list[str]:
    try:
        text = _fetch(f"http://127.0.0.1:{port}/metrics").decode()
    except (urllib.error.URLError, OSError) as exc:
        return [f"(could not read /metrics: {exc})"]
    return [line for line in text.splitlines() if line.startswith(METRIC_PREFIXES)]


def _run(args: argparse.Namespace, nginx: str, log: TextIO) -> dict[str, Any]:
    """Start everything, measure every round, stop everything (also on error or Ctrl-C)."""
    started = time.monotonic()
    # No ETag hashing: rclone would hash each fresh object on its first GET (~7 ms per 4 MiB),
    # an origin delay the edge would pay and nginx (through rclone serve http) would not.
    with local_origin(BUCKET, prefix="encore-bench-crowd-", etag_hash=False) as (tmp, s3):
        processes: list[subprocess.Popen[bytes]] = []
        proxies: list[TcpProxy] = []
        crowd = Crowd(args.client_procs)
        try:
            names = [f"{cache}{n}" for n in range(1, args.rounds + 1) for cache in CACHES]
            objects = _publish(s3, tmp, names)
            plain_port = free_port()
            processes.append(
                serve_folder_over_http(
                    tmp / "s3" / BUCKET, plain_port, (tmp / "rclone-http.log").open("wb")
                )
            )
            s3_parts = urlsplit(s3.endpoint_url)
            latency = Faults(latency_s=args.latency_ms / 1000)
            edge_proxy = TcpProxy(s3_parts.hostname or "127.0.0.1", s3_parts.port or 80, latency)
            nginx_proxy = TcpProxy("127.0.0.1", plain_port, dataclasses.replace(latency))
            proxies += [edge_proxy.start(), nginx_proxy.start()]

            edge_port, nginx_port = free_port(), free_port()
            prefetch_off = _edge_config(
                tmp / "edge.toml", edge_port, edge_proxy.url, args.workers, tmp / "cache"
            )
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "edge", "serve", "--config", str(tmp / "edge.toml")],
                    stdout=subprocess.DEVNULL,
                    stderr=(tmp / "edge.log").open("wb"),
                    env={**os.environ, "PYTHONWARNINGS": "ignore"},
                )
            )
            (tmp / "nginx-temp").mkdir()
            (tmp / "nginx.conf").write_text(
                NGINX_CONF.format(
                    tmp=tmp, port=nginx_port, origin_port=nginx_proxy.port, workers=args.workers
                )
            )
            processes.append(
                subprocess.Popen(
                    [nginx, "-c", str(tmp / "nginx.conf")],
                    stdout=subprocess.DEVNULL,
                    stderr=(tmp / "nginx.log").open("wb"),
                )
            )
            crowd.start()
            _wait(f"http://127.0.0.1:{plain_port}/", tmp / "rclone-http.log")
            _wait(f"http://127.0.0.1:{edge_port}/readyz", tmp / "edge.log")
            _wait(f"http://127.0.0.1:{nginx_port}/healthz", tmp / "nginx.log")
            contenders = {
                "edge": Contender("edge", edge_port, edge_proxy),
                "nginx": Contender("nginx", nginx_port, nginx_proxy),
            }
            print(f"ready in {time.monotonic() - started:.1f} s", file=log, flush=True)

            rounds = []
            for number in range(1, args.rounds + 1):
                order = CACHES if number % 2 else CACHES[::-1]
                for name in order:
                    result = _measure(
                        crowd,
                        contenders[name],
                        objects[f"{name}{number}"],
                        args.clients,
                        args.workers,
                        number,
                    )
                    cold = _summary(result.cold)
                    print(
                        f"round {number} {name:<5}: origin GETs {result.slice_gets}, cold TTFB "
                        f"p99 {cold['ttfb_ms']['p99']} ms, errors {cold['errors']}",
                        file=log,
                        flush=True,
                    )
                    rounds.append(result)
            for process in processes:
                if process.poll() is not None:
                    sys.exit(f"bench_flash_crowd: {process.args!r} exited during the run")
            report = _report(rounds, args, prefetch_off, _edge_metrics(edge_port))
        finally:
            crowd.stop()
            stop_processes(processes)
            for proxy in proxies:
                proxy.stop()
            if args.keep_logs is not None:
                args.keep_logs.mkdir(parents=True, exist_ok=True)
                for path in tmp.glob("*.log"):
                    shutil.copy(path, args.keep_logs / path.name)
    report["seconds"] = round(time.monotonic() - started, 1)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2, help="processes per cache")
    parser.add_argument("--latency-ms", type=float, default=50, help="added by the origin proxy")
    parser.add_argument("--client-procs", type=int, default=2, help="processes for the crowd")
    parser.add_argument("--json", action="store_true", help="JSON on stdout, table on stderr")
    parser.add_argument("--check", action="store_true", help="exit 1 if the edge misses targets")
    parser.add_argument("--keep-logs", type=Path, metavar="DIR", help="copy the logs here")
    args = parser.parse_args()
    if args.clients < 1 or args.rounds < 1 or args.workers < 1 or args.client_procs < 1:
        parser.error("--clients, --rounds, --workers and --client-procs must be at least 1")
    nginx = need_tool("nginx", "bench_flash_crowd", "nginx-light")
    log = sys.stderr if args.json else sys.stdout
    # SIGTERM takes the same way out as Ctrl-C: _run's finally stops everything it started.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        report = _run(args, nginx, log)
    except KeyboardInterrupt:
        sys.exit("bench_flash_crowd: interrupted (everything it started is stopped)")
    print(file=log)
    _print_table(report, log)
    print(f"(whole run: {report['seconds']} s)", file=log)
    if args.json:
        print(json.dumps(report, indent=2))
    if args.check and not all(report["edge_checks"].values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
