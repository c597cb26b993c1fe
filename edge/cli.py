"""``encore-edge``: run an edge node, or the local demo."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from edge.settings import ConfigError, load_settings


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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # Imported here so `encore-edge --help` stays fast.
    from edge.server import configure_logging, serve  # noqa: PLC0415

    configure_logging()
    try:
        if args.command == "serve":
            settings = load_settings(args.config)
            settings.check_serving()
            serve(settings)
        else:
            from edge.demo import DemoError, run_demo  # noqa: PLC0415

            try:
                run_demo(port=args.port, tracks=args.tracks, data_dir=args.data_dir)
            except DemoError as exc:
                print(f"encore-edge demo: {exc}", file=sys.stderr)
                return 1
    except ConfigError as exc:
        print(f"encore-edge: config error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # e.g. the port is taken
        print(f"encore-edge: {exc}", file=sys.stderr)
        return 1
    return 0
