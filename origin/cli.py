"""``encore-origin``: fill and inspect the origin bucket."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from edge.settings import ConfigError, Settings, load_settings
from edge.sizes import format_size
from origin import layout
from origin.demo_catalog import make_demo_catalog
from origin.ffmpeg import FfmpegError
from origin.manifest import MAX_MANIFEST_BYTES, ManifestError, parse_manifest
from origin.s3 import open_s3_client


class CliError(Exception):
    """One readable line for the operator; exit status 1."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="encore-origin", description=__doc__)
    parser.add_argument("--config", help="edge TOML config; its [origin] section is used")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo-catalog", help="generate and publish synthetic tracks")
    demo.add_argument("--tracks", type=int, default=3, help="how many tracks (default 3)")
    demo.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    commands.add_parser("ls", help="list published tracks")
    return parser


async def _list(settings: Settings) -> None:
    bucket = settings.origin.bucket
    async with open_s3_client(settings.origin) as client:
        paginator = client.get_paginator("list_objects_v2")
        rows: list[tuple[str, str, str, str]] = []
        async for page in paginator.paginate(Bucket=bucket, Prefix=layout.TRACKS_PREFIX):
            for item in page.get("Contents", []):
                key: str = item["Key"]
                if not key.endswith("/manifest.json"):
                    continue
                track_id = key[len(layout.TRACKS_PREFIX) : -len("/manifest.json")]
                response = await client.get_object(Bucket=bucket, Key=key)
                async with response["Body"] as body:
                    raw = await body.read()
                try:
                    manifest = parse_manifest(raw[: MAX_MANIFEST_BYTES + 1], track_id)
                except ManifestError as exc:
                    rows.append((track_id, f"INVALID MANIFEST: {exc}", "", ""))
                    continue
                names = ",".join(sorted(manifest.renditions, key=lambda n: (len(n), n)))
                size = sum(r.size for r in manifest.renditions.values())
                rows.append((track_id, manifest.title, names, format_size(size)))
    print(f"{'TRACK':<20} {'TITLE':<30} {'RENDITIONS':<16} SIZE")
    for row in rows:
        print(f"{row[0]:<20} {row[1]:<30} {row[2]:<16} {row[3]}")


async def _demo_catalog(settings: Settings, tracks: int, seed: int) -> None:
    if not 1 <= tracks <= 10_000:
        raise CliError("--tracks must be between 1 and 10000")
    async with open_s3_client(settings.origin) as client:
        for manifest in await make_demo_catalog(
            client, settings.origin.bucket, tracks=tracks, seed=seed
        ):
            print(
                json.dumps(
                    {"published": manifest.track_id, "renditions": list(manifest.renditions)}
                )
            )


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings(args.config)
        work: Any
        if args.command == "ls":
            work = _list(settings)
        else:
            work = _demo_catalog(settings, args.tracks, args.seed)
        asyncio.run(work)
    except (ConfigError, CliError, FfmpegError) as exc:
        print(f"encore-origin: {exc}", file=sys.stderr)
        return 1
    except ClientError as exc:
        error = exc.response.get("Error", {})
        print(
            f"encore-origin: origin refused: {error.get('Code')} {error.get('Message', '')}",
            file=sys.stderr,
        )
        return 1
    except BotoCoreError as exc:
        print(f"encore-origin: origin unreachable: {exc}", file=sys.stderr)
        return 1
    return 0
