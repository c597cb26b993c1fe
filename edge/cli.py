"""``encore-edge``: run an edge node or the local demo; warm, sign and simulate."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from origin.settings import ConfigError, load_settings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="encore-edge", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run an edge node")
    serve.add_argument("--config", required=True, help="path to the node's TOML config")
    demo = commands.add_parser(
        "demo", help="local demo: embedded S3 server, a demo catalogue, and an edge serving it"
    )
    demo.add_argument("--port", type=int, default=8080, help="edge port (default 8080)")
    demo.add_argument("--tracks", type=int, default=5, help="demo tracks to ingest (default 5)")
    demo.add_argument(
        "--data-dir", type=Path, default=Path("var/demo"), help="where the demo keeps its bucket"
    )
    simulate = commands.add_parser(
        "simulate", help="replay a request trace through the cache policies"
    )
    simulate.add_argument("--trace", type=Path, required=True, help="trace file or access log")
    simulate.add_argument(
        "--cache-size",
        required=True,
        metavar="SIZE[,SIZE...]",
        help="bytes (512MiB, 20GB) or a share of the trace's footprint (1%%)",
    )
    simulate.add_argument(
        "--policy", default="s3fifo,lru", help="policies to compare (also: belady, offline optimum)"
    )
    simulate.add_argument("--slice-bytes", help="slice size (default: the config's, else 256KiB)")
    simulate.add_argument("--config", help="take cache.slice_bytes from this config")
    simulate.add_argument("--json", action="store_true", help="machine-readable results")
    warm = commands.add_parser(
        "warm", help="pre-position a top-N list of tracks on a running node (admin API)"
    )
    warm.add_argument("--config", required=True, help="the node's TOML config (admin section)")
    warm.add_argument("--top", type=Path, required=True, help="file of track ids, one per line")
    warm.add_argument("--renditions", help="only these renditions, e.g. 96,160 (default: all)")
    warm.add_argument("--slices", type=int, help="slices from the start of each (default 4)")
    warm.add_argument("--admin-url", help="the admin API (default: from the config)")
    sign = commands.add_parser("sign", help="print a signed URL path for this node's keys")
    sign.add_argument("--config", required=True, help="the node's TOML config (auth section)")
    sign.add_argument("path", metavar="URL_PATH", help="e.g. /v1/tracks/ID/160")
    sign.add_argument("--ttl", type=int, default=3600, help="seconds it stays valid (3600)")
    sign.add_argument("--kid", help="signing key id (needed when there are several)")
    sign.add_argument("--region", help="the client's region, with auth.bind_region on")
    return parser


def _sign(args: argparse.Namespace) -> int:
    from edge.tools.sign import SignError, sign  # noqa: PLC0415

    try:
        print(
            sign(
                load_settings(args.config),
                args.path,
                ttl_s=args.ttl,
                kid=args.kid,
                region=args.region,
            )
        )
    except SignError as exc:
        print(f"encore-edge sign: {exc}", file=sys.stderr)
        return 1
    return 0


def _warm(args: argparse.Namespace) -> int:
    from edge.tools.warm import WarmError, warm  # noqa: PLC0415

    try:
        summary = warm(
            load_settings(args.config),
            args.top,
            renditions=args.renditions.split(",") if args.renditions else None,
            slices=args.slices,
            url=args.admin_url,
        )
    except WarmError as exc:
        print(f"encore-edge warm: {exc}", file=sys.stderr)
        return 1
    for failure in summary.failed:
        print(f"  {failure['track_id']}: {failure['error']}: {failure['message']}", file=sys.stderr)
    print(summary.line())
    return 1 if summary.failed else 0


def _simulate(args: argparse.Namespace) -> int:
    from edge.tools.simulate_cli import SimulateError, run  # noqa: PLC0415
    from edge.tools.traces import TraceError  # noqa: PLC0415
    from origin.sizes import parse_size  # noqa: PLC0415

    slice_bytes = load_settings(args.config).cache.slice_bytes
    try:
        if args.slice_bytes is not None:
            slice_bytes = parse_size(args.slice_bytes)
            if slice_bytes < 1024:
                raise SimulateError("--slice-bytes must be at least 1KiB")
        run(args.trace, args.cache_size, args.policy, slice_bytes, args.json)
    except (SimulateError, TraceError, ValueError) as exc:
        print(f"encore-edge simulate: {exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    tools = {"simulate": _simulate, "warm": _warm, "sign": _sign}
    if args.command in tools:
        try:
            return tools[args.command](args)
        except ConfigError as exc:
            print(f"encore-edge: config error: {exc}", file=sys.stderr)
            return 2
    # Imported here so `encore-edge --help` stays fast.
    from edge.runtime.node import serve  # noqa: PLC0415
    from edge.runtime.worker import configure_logging  # noqa: PLC0415

    configure_logging()
    try:
        if args.command == "serve":
            settings = load_settings(args.config)
            settings.check_serving()
            serve(settings, config_path=Path(args.config))
        else:
            from edge.tools.demo import DemoError, run_demo  # noqa: PLC0415

            try:
                run_demo(port=args.port, tracks=args.tracks, data_dir=args.data_dir)
            except DemoError as exc:
                print(f"encore-edge demo: {exc}", file=sys.stderr)
                return 1
    except ConfigError as exc:
        print(f"encore-edge: config error: {exc}", file=sys.stderr)
        return 2
    except (OSError, RuntimeError) as exc:  # the port is taken; workers keep failing
        print(f"encore-edge: {exc}", file=sys.stderr)
        return 1
    return 0
