"""Listeners on cold tracks (issue 15): the same Locust listener population against an Encore
edge and against nginx ``proxy_cache`` + ``slice`` + ``proxy_cache_lock on``, in one run.

A catalogue of ``--tracks`` short tracks (``--track-seconds``, default 30-45 s) is made with
ffmpeg and ingested for real (``origin.ingest``, the default ladder, licensed everywhere) into
the local S3 server (``loadtests.local_origin``) once, and each is published again under
``--copies - 1`` more ids (its objects hard linked to their keys under the new id, a manifest
written with ``origin.manifest``): 16 x 30 = 480 tracks by default, distinct objects to both
caches. With a few dozen tracks, 200 listeners at ``--speed 10`` would have played every one
within seconds, and under 1 % of the ~3600 plays of a pass would start on a cold track: the
startup p95 would not see them. With 480, a few hundred plays start cold (the "cold tracks"
column counts the tracks whose manifest a server fetched from the origin). Then, in rounds
that alternate the order, each server gets a fresh cold cache (a new process with a new
cache folder) and:

* a **cold pass**: ``--listeners`` Locust listeners (``loadtests/locustfile.py``: manifest,
  throughput-driven bitrate, codec headers, ranges at playback pace, stalls, seeks, skips,
  next-track hints) ramp up at ``--spawn-rate`` per second and play the catalogue with
  ``--popularity`` for ``--seconds``, at ``--speed`` times real time; its QoE report gives
  startup p50/p95/p99 (from pressing play to 2 s of audio buffered, the manifest included),
  the rebuffer ratio (stall time over play time), stalls and failures;
* a **warm pass** right after on the same, now warm, server (``--warm-seconds``): the floor
  the load generator and the server add on this machine (its range TTFB p95 is the "warm
  TTFB" of the startup target).

Each server reaches the bucket through its own TCP proxy (``tests.support.tcp_proxy``, as
``bench_flash_crowd``, extended in ``loadtests.bench_listeners_origin``) that adds
``--latency-ms`` before each request and counts requests, response bytes (heads included) and
each answer's first byte from its request's arrival: those, not the servers' own metrics, are
the origin GETs, bytes and TTFB (so a slow origin and a slow cache can be told apart). The
edge's own ``/metrics`` after each cold pass (fills, fill waits, prefetch, manifest loads) are
printed for reading its numbers. The contenders, each with ``--workers`` processes:

* **edge**: ``encore-edge serve`` as ``bench_hit_path`` starts it (its config: signed URLs
  required, licences checked for the client's region, access log on, 256 MiB memory tier,
  a disk tier in a fresh folder, look-ahead prefetch and next-track warming at their
  defaults) reading the bucket as S3. The listeners sign their URLs with its keys
  (``--sign-config``).
* **nginx**: ``bench_hit_path``'s nginx (``slice 256k``, ``proxy_cache_lock on``, buffered
  access log, ``sendfile on``) reading the bucket folder through ``rclone serve http``. nginx
  knows no manifests, so each track's manifest as the edge would show it (``client_view``,
  with rendition URLs pointing at the bucket keys) is put into the bucket folder at
  ``v1/tracks/<id>``: nginx fetches and caches it from the origin like any object, through
  the same 50 ms, so the listeners play against both with no change. nginx's origin proxy
  drops Accept-Encoding: ``rclone serve http`` would gzip those JSON files on the fly (S3
  never does), which nginx's slice module cannot handle.

The load generator's own CPU is measured (``/proc`` of Locust's process tree; the mean over
the pass, and the busiest 5 s after its first 5, which go to imports): at >= 90 % of the cores
it may use (``--locust-processes``) the pass is client-bound, and says more about Locust than
about the servers. The whole machine's busy share is shown too (a shared 2-core machine), and
sampled before the rounds. The origin round trip is measured once, before the rounds: the
median of 10 GETs of a 256 KiB range through the proxy.

Targets for the edge, in every round (``--check`` exits 1 if one is missed): rebuffer ratio
<= 0.1 %, and startup p95 <= 2 x the origin round trip + the warm range TTFB p95 of that edge.
nginx's numbers are shown against the same formula, and not checked.

    python -m loadtests.bench_listeners [--listeners 200] [--speed 10] [--latency-ms 50]
        [--tracks 16] [--copies 30] [--seconds 60] [--warm-seconds 20] [--rounds 2] [--workers 2]
        [--locust-processes 1] [--json PATH] [--check] [--keep-logs DIR]

Needs nginx with the slice module (Debian's nginx-light) on PATH.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import shlex
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loadtests import bench_hit_path as hit
from loadtests.bench_listeners_origin import (
    BUCKET,
    READY_OBJECT,
    CountingProxy,
    ingest_catalogue,
    measure_round_trip,
    origin_delta,
    publish_copies,
    track_lengths,
    write_nginx_views,
)
from loadtests.bench_listeners_report import (
    CLIENT_BOUND,
    REBUFFER_TARGET,
    SERVERS,
    STARTUP_ROUND_TRIPS,
    busy_share,
    fmt,
    machine_busy_ticks,
    missed,
    pass_row,
    pct,
    peak_share,
    table,
    targets,
)
from loadtests.edge_process import metric_values, stop_on_sigterm
from loadtests.local_origin import local_origin, need_tool, serve_folder_over_http
from origin.local_s3 import LocalS3, free_port
from tests.support.tcp_proxy import Faults

BENCH = "bench_listeners"
REPO = Path(__file__).resolve().parent.parent
LOCUSTFILE = REPO / "loadtests" / "locustfile.py"
IMPORT_S = 5.0  # Locust's first seconds, importing (~1.5 s of CPU): left out of the peak
BASELINE_S = 3.0  # the machine's load from others, sampled before the rounds
EDGE_METRICS = (  # what the edge says it did in a cold pass, for reading its numbers
    "encore_origin_fills_total",
    "encore_fill_waits_total",
    "encore_prefetch_",
    "encore_origin_retries_total",
    "encore_manifest_lookups_total",
)


# --- one pass of Locust ------------------------------------------------------------------------


def locust_command(args: argparse.Namespace, host: str, seconds: int, out: Path) -> list[str]:
    command = [
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless",
        "-u", str(args.listeners), "-r", f"{args.spawn_rate:g}", "-t", f"{seconds}s",
        "--host", host, "--only-summary", "--csv", str(out / "locust"),
        "--tracks", f"@{args.tracks_file}", "--popularity", args.popularity,
        "--speed", f"{args.speed:g}", "--region", hit.CLIENT_REGION,
        "--qoe-report", str(out / "qoe.json"),
    ]  # fmt: skip
    if args.locust_processes > 1:
        command += ["--processes", str(args.locust_processes)]
    return command


def run_pass(
    procs: hit.Processes,
    server: hit.Server,
    proxy: CountingProxy,
    args: argparse.Namespace,
    seconds: int,
    out: Path,
    sign_config: Path | None,
) -> dict[str, Any]:
    """One Locust run against ``server``: its QoE report, the origin traffic, both CPUs."""
    out.mkdir(parents=True)
    command = locust_command(args, server.base_url, seconds, out)
    if sign_config is not None:
        command += ["--sign-config", str(sign_config)]
    server_pids = [p.pid for p in server.roots]
    origin_before = proxy.snapshot()
    server_cpu_before = hit.tree_cpu_seconds(server_pids)
    machine_before = machine_busy_ticks()
    usage_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    locust = procs.start(command, out / "locust.log", cwd=REPO)
    samples: list[tuple[float, float]] = []
    deadline = started + seconds + 90
    while locust.poll() is None:
        samples.append((time.monotonic(), hit.tree_cpu_seconds([locust.pid])))
        for process in server.roots:
            if process.poll() is not None:
                sys.exit(f"{BENCH}: {server.label or server.name} exited during a pass")
        if time.monotonic() > deadline:
            sys.exit(f"{BENCH}: Locust did not stop in time; log {out / 'locust.log'}")
        time.sleep(1.0)
    wall = time.monotonic() - started
    procs.started.remove(locust)
    usage_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    locust_cpu = (usage_after.ru_utime - usage_before.ru_utime) + (
        usage_after.ru_stime - usage_before.ru_stime
    )
    machine_after = machine_busy_ticks()
    running = [sample for sample in samples if sample[0] - started >= IMPORT_S]
    report_path = out / "qoe.json"
    if not report_path.is_file():
        tail = "\n".join((out / "locust.log").read_text(errors="replace").splitlines()[-20:])
        sys.exit(f"{BENCH}: Locust wrote no QoE report (exit {locust.returncode}):\n{tail}")
    qoe = json.loads(report_path.read_text())
    cores = args.locust_processes
    return {
        "qoe": qoe,
        "row": pass_row(qoe),
        "origin": origin_delta(proxy, origin_before),
        "locust": {
            "exit_code": locust.returncode,
            "wall_s": round(wall, 1),
            "cpu_s": round(locust_cpu, 1),
            "share": round(locust_cpu / wall / cores, 3),
            "peak_share": round(peak_share(running) / cores, 3),
            "processes": cores,
        },
        "server_cpu_s": round(hit.tree_cpu_seconds(server_pids) - server_cpu_before, 1),
        "machine_busy": busy_share(machine_before, machine_after),
        "locust_command": shlex.join(command),
    }


# --- the run -----------------------------------------------------------------------------------


@dataclass
class Bench:
    args: argparse.Namespace
    tmp: Path
    procs: hit.Processes
    setup: hit.Setup  # what bench_hit_path's start_edge/start_nginx need
    proxies: dict[str, CountingProxy] = field(default_factory=dict)


def start(bench: Bench, name: str, number: int) -> hit.Server:
    """A fresh server with an empty cache: a folder of its own for this round."""
    folder = bench.tmp / f"round-{number}"
    folder.mkdir(exist_ok=True)
    origin = bench.proxies[name]
    if name == "edge":
        # The same S3 server, through the latency proxy: a LocalS3 that is never started.
        s3 = LocalS3(bench.tmp / "s3", port=origin.port)
        setup = dataclasses.replace(bench.setup, tmp=folder, s3=s3)
        return hit.start_edge(setup, bench.args.workers, disk=False)
    setup = dataclasses.replace(bench.setup, tmp=folder, origin_port=origin.port)
    return hit.start_nginx(setup, bench.args.workers)


def run_round(bench: Bench, name: str, number: int, round_trip_ms: float) -> dict[str, Any]:
    args = bench.args
    server = start(bench, name, number)
    sign = server.log.with_name("edge.toml") if server.edge else None
    out = bench.tmp / f"round-{number}" / f"{name}-passes"
    try:
        cold = run_pass(
            bench.procs, server, bench.proxies[name], args, args.seconds, out / "cold", sign
        )
        if server.edge:
            text = hit.fetch(server.base_url + "/metrics", {}).decode()
            cold["edge_metrics"] = metric_values(text, EDGE_METRICS)
        warm = run_pass(
            bench.procs, server, bench.proxies[name], args, args.warm_seconds, out / "warm", sign
        )
    finally:
        bench.procs.stop(server.roots)
        if args.keep_logs is not None:
            keep = args.keep_logs / f"round-{number}-{name}"
            shutil.copytree(server.log.parent, keep, dirs_exist_ok=True, ignore=_not_logs)
            if out.exists():
                shutil.copytree(out, keep / "passes", dirs_exist_ok=True)
    return {
        "server": name,
        "round": number,
        "cold": cold,
        "warm": warm,
        "targets": targets(cold["row"], warm["row"], round_trip_ms),
    }


def _not_logs(folder: str, names: list[str]) -> list[str]:
    return [n for n in names if (Path(folder) / n).is_dir()]


def run(args: argparse.Namespace) -> dict[str, Any]:
    started = time.monotonic()
    procs = hit.Processes()
    proxies: list[CountingProxy] = []
    # No ETag hashing: rclone would hash each object on its first GET (see LocalS3), a delay
    # the edge (S3) would pay and nginx (plain HTTP) would not.
    with local_origin(BUCKET, prefix="encore-bench-listeners-", etag_hash=False) as (tmp, s3):
        try:
            low, high = args.track_seconds
            lengths = track_lengths(args.tracks, low, high, args.seed)
            print(
                f"{BENCH}: ingesting {args.tracks} tracks ({sum(lengths)} s of audio)", flush=True
            )
            ingest_started = time.monotonic()
            ingested = ingest_catalogue(s3, tmp, lengths, args.seed)
            ingest_s = round(time.monotonic() - ingest_started, 1)
            bucket_dir = tmp / "s3" / BUCKET
            ids = publish_copies(bucket_dir, ingested, args.copies)
            # rclone serve s3 caches directory listings (5 min): a new one sees the copies.
            s3.stop()
            s3.start()
            write_nginx_views(bucket_dir, ids)
            args.tracks_file = tmp / "tracks.txt"
            args.tracks_file.write_text("".join(f"{t}\n" for t in ids))
            print(f"{BENCH}: {len(ids)} tracks ready, ingested in {ingest_s} s", flush=True)

            plain_port = free_port()
            procs.started.append(
                serve_folder_over_http(bucket_dir, plain_port, (tmp / "rclone-http.log").open("wb"))
            )
            hit.wait_until_up(f"http://127.0.0.1:{plain_port}/{READY_OBJECT}")
            latency = Faults(latency_s=args.latency_ms / 1000)
            edge_proxy = CountingProxy("127.0.0.1", s3.port, latency)
            nginx_proxy = CountingProxy(
                "127.0.0.1", plain_port, dataclasses.replace(latency), identity=True
            )
            proxies += [edge_proxy, nginx_proxy]
            for proxy in proxies:
                proxy.start()
            # Any object will do: the first track's highest rendition, read beside the rounds.
            probe = json.loads((bucket_dir / "v1" / "tracks" / ids[0]).read_text())
            key = probe["renditions"][-1]["url"].lstrip("/")
            round_trip_ms = round(measure_round_trip(nginx_proxy.url, key) * 1000, 1)
            idle_before = machine_busy_ticks()
            time.sleep(BASELINE_S)  # what else this (shared) machine is doing
            baseline_busy = busy_share(idle_before, machine_busy_ticks())
            # start_nginx probes its "main rendition" key until nginx answers: READY_OBJECT,
            # so no track's slice is warmed; the edge's paths are the listeners' own.
            setup = hit.Setup(
                tmp, s3, nginx_proxy.port, {hit.MAIN_RENDITION: READY_OBJECT}, {}, {}, args, procs
            )
            bench = Bench(args, tmp, procs, setup, {"edge": edge_proxy, "nginx": nginx_proxy})
            rounds = []
            for number in range(1, args.rounds + 1):
                order = SERVERS if number % 2 else SERVERS[::-1]
                for name in order:
                    if name not in args.only:
                        continue
                    result = run_round(bench, name, number, round_trip_ms)
                    c = result["cold"]["row"]
                    print(
                        f"{BENCH}: round {number} {name}: startup p95 {fmt(c['startup_p95_ms'])}"
                        f" ms, rebuffer {pct(c['rebuffer_ratio'])}, origin GETs "
                        f"{result['cold']['origin']['gets']}, Locust CPU peak "
                        f"{result['cold']['locust']['peak_share']:.0%}",
                        flush=True,
                    )
                    rounds.append(result)
        finally:
            procs.stop()
            for proxy in proxies:
                proxy.stop()
            if args.keep_logs is not None:
                for path in tmp.glob("*.log"):
                    shutil.copy(path, args.keep_logs / path.name)
    audio_s = sum(lengths)
    return {
        "command": "python -m loadtests.bench_listeners " + shlex.join(args.argv),
        "config": {
            "listeners": args.listeners,
            "spawn_rate": args.spawn_rate,
            "speed": args.speed,
            "popularity": args.popularity,
            "tracks": args.tracks,
            "copies": args.copies,
            "track_seconds": "-".join(map(str, args.track_seconds)),
            "latency_ms": args.latency_ms,
            "seconds": args.seconds,
            "warm_seconds": args.warm_seconds,
            "rounds": args.rounds,
            "workers": args.workers,
            "locust_processes": args.locust_processes,
            "cpus": os.cpu_count(),
            "rebuffer_target": REBUFFER_TARGET,
            "startup_round_trips": STARTUP_ROUND_TRIPS,
            "client_bound_share": CLIENT_BOUND,
        },
        "catalogue": {
            "size": len(ids),
            "track_ids": ids,
            "lengths_s": lengths,
            "audio_s": audio_s,
            "ingest_s": ingest_s,
        },
        "origin_round_trip_ms": round_trip_ms,
        "machine_busy_before": baseline_busy,
        "rounds": rounds,
        "missed": missed(rounds),
        "elapsed_s": round(time.monotonic() - started, 1),
    }


def _span(text: str) -> tuple[int, int]:
    low, _, high = text.partition("-")
    try:
        span = (int(low), int(high or low))
    except ValueError:
        raise argparse.ArgumentTypeError("expected seconds as LOW-HIGH, e.g. 30-60") from None
    if not 1 <= span[0] <= span[1]:
        raise argparse.ArgumentTypeError("expected 1 <= LOW <= HIGH")
    return span


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--listeners", type=int, default=200, help="Locust users (200)")
    parser.add_argument(
        "--spawn-rate", type=float, help="listeners started per second (listeners / 10)"
    )
    parser.add_argument("--speed", type=float, default=10, help="playback speed (10)")
    parser.add_argument(
        "--popularity", default="zipf:1.0", help="zipf:S over the tracks (zipf:1.0)"
    )
    parser.add_argument("--tracks", type=int, default=16, help="tracks ingested (16)")
    parser.add_argument(
        "--copies", type=int, default=30, help="ids each track is published under (30)"
    )
    parser.add_argument("--track-seconds", type=_span, default=(30, 45), help="LOW-HIGH (30-45)")
    parser.add_argument("--latency-ms", type=float, default=50, help="added by each origin proxy")
    parser.add_argument("--seconds", type=int, default=60, help="cold pass per server and round")
    parser.add_argument("--warm-seconds", type=int, default=20, help="warm pass right after")
    parser.add_argument("--rounds", type=int, default=2, help="rounds, alternating the order")
    parser.add_argument("--workers", type=int, default=2, help="processes per server (2)")
    parser.add_argument("--locust-processes", type=int, default=1, help="Locust --processes")
    parser.add_argument("--only", default=",".join(SERVERS), help="edge,nginx")
    parser.add_argument("--seed", type=int, default=1, help="the catalogue's audio and lengths")
    parser.add_argument("--nginx-sendfile", choices=("on", "off"), default="on")
    parser.add_argument("--json", type=Path, metavar="PATH", help="write all results here")
    parser.add_argument("--check", action="store_true", help="exit 1 if the edge misses a target")
    parser.add_argument("--keep-logs", type=Path, metavar="DIR", help="copy logs and reports here")
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    args.only = [s.strip() for s in args.only.split(",") if s.strip()]
    if not args.only or set(args.only) - set(SERVERS):
        parser.error(f"--only: from {','.join(SERVERS)}")
    if args.check and "edge" not in args.only:
        parser.error("--check judges the edge: keep it in --only")
    if (
        min(
            args.listeners,
            args.tracks,
            args.copies,
            args.rounds,
            args.workers,
            args.locust_processes,
        )
        < 1
    ):
        parser.error(
            "--listeners, --tracks, --copies, --rounds, --workers, --locust-processes: >= 1"
        )
    if args.seconds < 10 or args.warm_seconds < 10:
        parser.error("--seconds and --warm-seconds: at least 10 (Locust's first 5 go to imports)")
    if not args.speed > 0:
        parser.error("--speed must be above 0")
    if args.spawn_rate is None:
        args.spawn_rate = args.listeners / 10
    if not args.spawn_rate > 0:
        parser.error("--spawn-rate must be above 0")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if "nginx" in args.only:
        need_tool("nginx", BENCH, "nginx-light")
    if args.keep_logs is not None:
        args.keep_logs.mkdir(parents=True, exist_ok=True)
    stop_on_sigterm()  # SIGTERM takes Ctrl-C's way out: every finally stops what it started
    try:
        document = run(args)
    except KeyboardInterrupt:
        sys.exit(f"{BENCH}: interrupted (everything it started is stopped)")
    print()
    print(table(document))
    print(
        f"\n{BENCH}: {document['elapsed_s']:.0f} s; "
        + (
            f"edge missed {len(document['missed'])} target(s)"
            if document["missed"]
            else "edge met every target"
        )
    )
    for line in document["missed"]:
        print(f"  {line}")
    if args.json:
        args.json.write_text(json.dumps(document, indent=2) + "\n")
    if args.check and document["missed"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
