"""The cost of the access checks on the hit path: requests per second with the signature and
licence checks on, against the same edge with them off, in the same run.

Three edges (one worker each, memory tier only) serve the same cached 64 KiB range of one
track, driven by wrk in alternating rounds (``--rounds``, ``--seconds`` each):

* ``checks on``: signed URLs required (the URL carries ``exp``, ``kid``, ``sig``), the client
  region from the trusted header (wrk sends ``X-Client-Region: SE``) with a 200-entry CIDR
  table configured, and the licence decided for every request;
* ``licence only``: no signing keys; region and licence as above;
* ``checks off``: the same edge code with the region, signature and licence steps replaced by
  no-ops (this module's ``--serve-unchecked``, a benchmark-only launcher: the edge itself has
  no switch that turns licensing off).

The result is each variant's median req/s as a ratio to ``checks off``.

    python -m loadtests.bench_access_checks [--seconds 8] [--rounds 3] [--connections 32]

Needs wrk on PATH.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from loadtests.bench_hit_path import fetch, run_wrk, wait_until_up
from loadtests.edge_process import publish_random
from loadtests.local_origin import local_origin, need_tool, stop_processes
from origin.local_s3 import LocalS3, free_port

BUCKET = "audio"
RANGE = "bytes=1048576-1114111"  # 64 KiB: small answers, so per-request work shows
SECRET = "bench-secret-0123456789"
VARIANTS = ("checks on", "licence only", "checks off")


def _config(path: Path, port: int, s3: LocalS3, *, signed: bool) -> None:
    cidrs = ", ".join(f'"10.{n // 250}.{n % 250}.0/24" = "NO"' for n in range(200))
    path.write_text(
        f'[server]\nhost = "127.0.0.1"\nport = {port}\nworkers = 1\n'
        f'[origin]\nendpoint_url = "{s3.endpoint_url}"\nbucket = "{BUCKET}"\n'
        '[cache]\nmemory_bytes = "256MiB"\ndisk_bytes = 0\nprefetch_slices = 0\n'
        f'[edge]\nregion = "SE"\nclient_region_cidrs = {{ {cidrs} }}\n'
        + (f'[auth]\nsigning_keys = {{ k1 = "{SECRET}" }}\n' if signed else "")
    )


def _serve_unchecked(config: str) -> None:
    """Run an edge whose region, signature and licence steps do nothing (benchmark only)."""
    from edge.access.checks import Access  # noqa: PLC0415
    from edge.access.licensing import LicenceGate  # noqa: PLC0415
    from edge.cli import main as edge_main  # noqa: PLC0415

    def admit(self: Access, request: object) -> str:
        return "SE"

    def enforce(self: LicenceGate, *args: object, **kwargs: object) -> None:
        return None

    Access.admit = admit  # type: ignore[method-assign]
    LicenceGate.enforce = enforce  # type: ignore[method-assign]
    sys.exit(edge_main(["serve", "--config", config]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--serve-unchecked", metavar="CONFIG", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_unchecked:
        _serve_unchecked(args.serve_unchecked)
    need_tool("wrk", "bench_access_checks", "wrk")
    with local_origin(BUCKET) as (tmp, s3):
        track = "bench-access"
        publish_random(s3.endpoint_url, BUCKET, tmp / "publish", {track: os.urandom(4 * 1024**2)})
        from edge.access.signing import signed_query  # noqa: PLC0415

        path = f"/v1/tracks/{track}/320"
        query = signed_query(SECRET, "k1", path, int(time.time()) + 86_400)
        processes: list[subprocess.Popen[bytes]] = []
        urls: dict[str, str] = {}
        try:
            for variant in VARIANTS:
                port = free_port()
                config = tmp / f"{variant.replace(' ', '-')}.toml"
                _config(config, port, s3, signed=variant == "checks on")
                command = ["-m", "edge", "serve", "--config", str(config)]
                if variant == "checks off":
                    command = [
                        "-m",
                        "loadtests.bench_access_checks",
                        "--serve-unchecked",
                        str(config),
                    ]
                log = (tmp / f"{variant.replace(' ', '-')}.log").open("wb")
                processes.append(
                    subprocess.Popen(
                        [sys.executable, *command],
                        stdout=subprocess.DEVNULL,
                        stderr=log,
                        env={**os.environ, "PYTHONWARNINGS": "ignore"},
                    )
                )
                base = f"http://127.0.0.1:{port}"
                wait_until_up(f"{base}/readyz")
                urls[variant] = f"{base}{path}" + (f"?{query}" if variant == "checks on" else "")
            bodies = {
                fetch(url, {"Range": RANGE, "X-Client-Region": "SE"}) for url in urls.values()
            }
            if len(bodies) != 1:
                sys.exit("bench_access_checks: the variants disagree on the bytes")
            samples: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
            for round_ in range(args.rounds):
                order = VARIANTS if round_ % 2 == 0 else tuple(reversed(VARIANTS))
                for variant in order:
                    rps, _ = run_wrk(
                        urls[variant],
                        RANGE,
                        args.seconds,
                        args.connections,
                        extra_headers={"X-Client-Region": "SE"},
                    )
                    samples[variant].append(rps)
            off = statistics.median(samples["checks off"])
            results = {
                variant: {
                    "rps_median": round(statistics.median(rates)),
                    "rps_rounds": [round(r) for r in rates],
                    "ratio_to_checks_off": round(statistics.median(rates) / off, 3),
                }
                for variant, rates in samples.items()
            }
            for variant, result in results.items():
                print(
                    f"{variant:>13}: {result['rps_median']} req/s, "
                    f"{result['ratio_to_checks_off']} of checks off",
                    file=sys.stderr,
                )
            print(json.dumps({"range": RANGE, "connections": args.connections,
                              "seconds": args.seconds, "rounds": args.rounds,
                              "results": results}, indent=2))  # fmt: skip
        finally:
            stop_processes(processes)


if __name__ == "__main__":
    main()
