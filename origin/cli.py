"""``encore-origin``: ingest audio into the origin bucket and manage the catalogue there."""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from botocore.exceptions import BotoCoreError, ClientError

from origin import layout
from origin.catalog import (
    BucketUnusable,
    TrackNotFound,
    check_bucket,
    list_manifests,
    read_manifest,
    relicense,
    remove_track,
)
from origin.demo_catalog import make_demo_catalog
from origin.ffmpeg import FfmpegError
from origin.ingest import IngestJob, IngestResult, ingest
from origin.ladder import parse_ladder
from origin.license import KEEP, License, LicenseChange, parse_instant, parse_regions
from origin.manifest import Manifest, ManifestError
from origin.s3 import open_s3_client
from origin.settings import ConfigError, Settings, load_settings
from origin.sizes import format_size
from origin.transcode import SourceError

UPLOAD_ATTEMPTS = 3  # a batch tool can afford to retry a dropped request


class CliError(Exception):
    """One readable line for the operator; exit status 1."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, like every other error of this tool; --help has the usage.
        self.exit(2, f"{self.prog}: {message}\n")


def _argument(convert: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse type whose ValueError message reaches the user unchanged."""

    def parse(text: str) -> Any:
        try:
            return convert(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parse.__name__ = convert.__name__
    return parse


def _track_id(text: str) -> str:
    layout.track_prefix(text)  # raises ValueError with the rule
    return text


def _track_count(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 10_000:
        raise ValueError(f"{text!r}: expected a number of tracks from 1 to 10000")
    return int(text)


def _durations(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"(\d+)-(\d+)", text)
    if match is None or not 1 <= int(match[1]) <= int(match[2]) <= 3600:
        raise ValueError(f"{text!r}: expected MIN-MAX seconds within 1-3600, such as 30-300")
    return int(match[1]), int(match[2])


def _add_license_options(parser: argparse.ArgumentParser) -> None:
    regions = _argument(parse_regions)
    instant = _argument(parse_instant)
    parser.add_argument(
        "--allow",
        type=regions,
        default=KEEP,
        metavar="SE,NO,...",
        help="regions where the track may play (ISO 3166-1 alpha-2, or *)",
    )
    parser.add_argument(
        "--deny",
        type=regions,
        default=KEEP,
        metavar="US,...",
        help="regions where it may not, even if allowed (deny wins)",
    )
    parser.add_argument(
        "--not-before",
        type=instant,
        default=KEEP,
        metavar="ISO",
        help="not served before this date or time (UTC unless given); none clears",
    )
    parser.add_argument("--not-after", type=instant, default=KEEP, metavar="ISO",
                        help="not served after this date or time; none clears")  # fmt: skip


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="encore-origin", description=__doc__)
    parser.add_argument("--config", help="edge TOML config; its [origin] and [ingest] are used")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of internal errors")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    ingest_cmd = commands.add_parser(
        "ingest", help="transcode a file into the ladder and publish it"
    )
    ingest_cmd.add_argument("source", type=Path, metavar="AUDIO_FILE")
    ingest_cmd.add_argument("--track-id", required=True, type=_argument(_track_id))
    ingest_cmd.add_argument("--title", help="default: the file's title tag, else its name")
    ingest_cmd.add_argument("--artist", help="default: the file's artist tag")
    _add_license_options(ingest_cmd)
    ingest_cmd.add_argument(
        "--ladder",
        type=_argument(lambda s: parse_ladder(s.split(","))),
        help="rungs such as vorbis:96,vorbis:160,opus:64 (default: ingest.ladder)",
    )
    ingest_cmd.add_argument(
        "--prune",
        action="store_true",
        help="after publishing, delete audio of this track that the manifest no longer uses",
    )

    license_cmd = commands.add_parser("license", help="change a track's licence (manifest only)")
    license_cmd.add_argument("track_id", type=_argument(_track_id), metavar="TRACK_ID")
    _add_license_options(license_cmd)

    ls_cmd = commands.add_parser("ls", help="list published tracks")
    ls_cmd.add_argument("--json", action="store_true", help="one JSON document for scripts")
    show_cmd = commands.add_parser("show", help="print a track's manifest")
    show_cmd.add_argument("track_id", type=_argument(_track_id), metavar="TRACK_ID")
    rm_cmd = commands.add_parser("rm", help="unpublish a track and delete its objects")
    rm_cmd.add_argument("track_id", type=_argument(_track_id), metavar="TRACK_ID")

    demo = commands.add_parser("demo-catalog", help="generate and ingest synthetic tracks")
    demo.add_argument(
        "--tracks", type=_argument(_track_count), default=3, help="how many tracks (default 3)"
    )
    demo.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    demo.add_argument(
        "--durations",
        type=_argument(_durations),
        default=(30, 300),
        metavar="MIN-MAX",
        help="track lengths in seconds (default 30-300)",
    )
    return parser


def _license_change(args: argparse.Namespace) -> LicenseChange:
    return LicenseChange(args.allow, args.deny, args.not_before, args.not_after)


def _describe_license(license: License | None) -> str:
    return "none (served nowhere)" if license is None else license.describe()


def _say(line: str) -> None:
    print(line, flush=True)


def _report(result: IngestResult) -> None:
    manifest = result.manifest
    verb = "unchanged" if result.unchanged else "published"
    _say(
        f"{verb} {manifest.track_id}: {manifest.title!r} by {manifest.artist or '-'}, "
        f"{manifest.duration_s:.1f} s; licence {_describe_license(manifest.license)}"
    )
    for r in manifest.renditions.values():
        state = "uploaded" if r.key in result.uploaded else "already there"
        _say(
            f"  {r.name:<8} {r.codec:<6} {r.bitrate_kbps:>4} kbps (measured {r.measured_kbps:.1f})"
            f"  {format_size(r.size):>9}  {len(r.seek_table)} seek points  {state}"
        )
    for key in result.pruned:
        _say(f"  pruned {key}")


async def _ingest(client: Any, settings: Settings, args: argparse.Namespace) -> None:
    job = IngestJob(
        source=args.source,
        track_id=args.track_id,
        title=args.title,
        artist=args.artist,
        license=_license_change(args),
        prune=args.prune,
    )
    result = await ingest(
        client,
        settings.origin.bucket,
        job,
        ladder=args.ladder or settings.ingest.ladder,
        part_bytes=settings.ingest.part_bytes,
        say=_say,
    )
    _report(result)
    if result.prune_error is not None:
        raise CliError(f"{job.track_id} is published, but pruning failed: {result.prune_error}")


async def _license(client: Any, settings: Settings, args: argparse.Namespace) -> None:
    change = _license_change(args)
    if change.is_empty:
        raise CliError("nothing to change: give --allow, --deny, --not-before or --not-after")
    await check_bucket(client, settings.origin.bucket)
    manifest = await relicense(client, settings.origin.bucket, args.track_id, change)
    _say(f"{manifest.track_id}: licence {_describe_license(manifest.license)}")


def _summary(track_id: str, manifest: Manifest) -> dict[str, Any]:
    return {
        "track_id": track_id,
        "title": manifest.title,
        "artist": manifest.artist,
        "duration_s": manifest.duration_s,
        "renditions": {
            name: {"codec": r.codec, "bitrate_kbps": r.bitrate_kbps, "size": r.size}
            for name, r in manifest.renditions.items()
        },
        "size": sum(r.size for r in manifest.renditions.values()),
        "license": None if manifest.license is None else manifest.license.to_doc(),
    }


async def _list(client: Any, settings: Settings, args: argparse.Namespace) -> None:
    await check_bucket(client, settings.origin.bucket)
    entries = await list_manifests(client, settings.origin.bucket)
    if args.json:
        tracks = []
        for track_id, found in entries:
            if isinstance(found, Manifest):
                tracks.append(_summary(track_id, found))
            else:
                tracks.append({"track_id": track_id, "error": str(found or "manifest vanished")})
        _say(json.dumps({"tracks": tracks}, indent=2))
        return
    _say(f"{'TRACK':<20} {'TITLE':<24} {'RENDITIONS':<16} {'SIZE':>9}  LICENCE")
    for track_id, found in entries:
        if not isinstance(found, Manifest):
            _say(f"{track_id:<20} INVALID MANIFEST: {found or 'vanished while listing'}")
            continue
        names = ",".join(sorted(found.renditions, key=lambda n: (len(n), n)))
        size = format_size(sum(r.size for r in found.renditions.values()))
        _say(
            f"{track_id:<20} {found.title[:24]:<24} {names:<16} {size:>9}  "
            f"{_describe_license(found.license)}"
        )


async def _show(client: Any, settings: Settings, args: argparse.Namespace) -> None:
    await check_bucket(client, settings.origin.bucket)
    manifest = await read_manifest(client, settings.origin.bucket, args.track_id)
    if manifest is None:
        raise TrackNotFound(f"track {args.track_id!r} is not published")
    _say(json.dumps(manifest.to_doc(), indent=2))


async def _remove(client: Any, settings: Settings, args: argparse.Namespace) -> None:
    await check_bucket(client, settings.origin.bucket)
    removed = await remove_track(client, settings.origin.bucket, args.track_id)
    _say(f"removed {args.track_id}: {len(removed)} objects")


async def _demo_catalog(client: Any, settings: Settings, args: argparse.Namespace) -> None:
    await check_bucket(client, settings.origin.bucket)
    results = await make_demo_catalog(
        client,
        settings.origin.bucket,
        tracks=args.tracks,
        ladder=settings.ingest.ladder,
        part_bytes=settings.ingest.part_bytes,
        seed=args.seed,
        durations=args.durations,
        say=_say,
        on_result=_report,
    )
    _say(f"{len(results)} demo tracks in {settings.origin.bucket}")


_COMMANDS = {
    "ingest": _ingest,
    "license": _license,
    "ls": _list,
    "show": _show,
    "rm": _remove,
    "demo-catalog": _demo_catalog,
}


def _quiet_about_dropped_connections(
    loop: asyncio.AbstractEventLoop, context: dict[str, Any]
) -> None:
    # When the server goes away mid-request, aiohttp leaves a task whose "exception was never
    # retrieved"; botocore has already raised the same failure, and main() reports it once.
    if isinstance(context.get("exception"), ConnectionError):
        return
    loop.default_exception_handler(context)


async def _run(settings: Settings, args: argparse.Namespace) -> None:
    asyncio.get_running_loop().set_exception_handler(_quiet_about_dropped_connections)
    async with open_s3_client(settings.origin, retries=UPLOAD_ATTEMPTS) as client:
        await _COMMANDS[args.command](client, settings, args)


def _error_line(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"origin refused: {error.get('Code')} {error.get('Message', '')}".strip()
    if isinstance(exc, BotoCoreError):
        return f"origin unreachable: {exc}"
    if isinstance(exc, ManifestError):
        return f"invalid manifest: {exc}"
    if isinstance(exc, OSError) and exc.strerror:
        where = f"{exc.filename}: " if exc.filename else ""
        return f"{where}{exc.strerror}"
    return str(exc)


_EXPECTED = (
    ConfigError,
    CliError,
    SourceError,
    FfmpegError,
    ManifestError,
    TrackNotFound,
    BucketUnusable,
    ClientError,
    BotoCoreError,
    ValueError,
    OSError,
)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings(args.config)
        asyncio.run(_run(settings, args))
    except KeyboardInterrupt:
        print("encore-origin: interrupted", file=sys.stderr)
        return 130
    except _EXPECTED as exc:
        print(f"encore-origin: {_error_line(exc)}", file=sys.stderr)
        return 1
    except Exception as exc:  # a bug: still one line, the traceback only on request
        if args.debug:
            raise
        print(
            f"encore-origin: internal error: {type(exc).__name__}: {exc} "
            "(run with --debug for the traceback)",
            file=sys.stderr,
        )
        return 1
    return 0
