"""The local demo: an embedded S3 server, a generated catalogue, and an edge serving it."""

from __future__ import annotations

import asyncio
import dataclasses
import os
from pathlib import Path

from edge.runtime.node import serve
from origin.catalog import list_manifests
from origin.demo_catalog import make_demo_catalog
from origin.ffmpeg import FfmpegError
from origin.ingest import IngestResult
from origin.local_s3 import LocalS3, LocalS3Error
from origin.manifest import Manifest
from origin.s3 import open_s3_client
from origin.settings import Settings, load_settings
from origin.transcode import SourceError

BUCKET = "audio"


class DemoError(Exception):
    pass


async def _ensure_catalog(settings: Settings, tracks: int) -> list[str]:
    """The demo tracks, ingesting them unless a valid catalogue is already there."""
    async with open_s3_client(settings.origin) as client:
        existing = sorted(
            track_id
            for track_id, manifest in await list_manifests(client, BUCKET)
            if isinstance(manifest, Manifest)
        )
        if len(existing) >= tracks:
            return existing[:tracks]
        print(f"generating and ingesting {tracks} demo tracks with ffmpeg ...", flush=True)
        results = await make_demo_catalog(
            client,
            BUCKET,
            tracks=tracks,
            ladder=settings.ingest.ladder,
            part_bytes=settings.ingest.part_bytes,
            say=lambda line: print(f"  {line}", flush=True),
            on_result=_print_track,
        )
        return [result.manifest.track_id for result in results]


def _print_track(result: IngestResult) -> None:
    manifest = result.manifest
    licence = manifest.license.describe() if manifest.license else "none"
    print(f"  {manifest.track_id}: {manifest.duration_s:.0f} s, licence {licence}", flush=True)


def run_demo(*, port: int, tracks: int, data_dir: Path) -> None:
    if not 1 <= tracks <= 100:
        raise DemoError("--tracks must be between 1 and 100")
    data_dir = data_dir.resolve()
    s3 = LocalS3(data_dir / "s3", log_path=data_dir / "rclone.log")
    try:
        s3.start()
    except LocalS3Error as exc:
        raise DemoError(str(exc)) from None
    try:
        s3.create_bucket(BUCKET)
        os.environ.update(s3.credentials_env())
        base = load_settings(None, env={})
        settings = dataclasses.replace(
            base,
            server=dataclasses.replace(base.server, host="127.0.0.1", port=port, workers=1),
            origin=dataclasses.replace(base.origin, endpoint_url=s3.endpoint_url, bucket=BUCKET),
            edge=dataclasses.replace(base.edge, region="SE"),
            cache=dataclasses.replace(
                base.cache,
                memory_bytes=256 * 1024**2,
                disk_path=str(data_dir / "cache"),
                disk_bytes=2 * 1024**3,
            ),
        )
        try:
            track_ids = asyncio.run(_ensure_catalog(settings, tracks))
        except (FfmpegError, SourceError) as exc:
            raise DemoError(f"ffmpeg failed: {exc}") from None
        edge = f"http://127.0.0.1:{port}"
        print(f"\nS3 origin: {s3.endpoint_url} (bucket {BUCKET!r}, data in {s3.data_dir})")
        print(f"Edge:      {edge}   (Ctrl-C stops the demo)\n\nTry:")
        first = track_ids[0]
        print(f"  curl -s {edge}/v1/tracks/{first} | python3 -m json.tool")
        print(f"  curl -sI {edge}/v1/tracks/{first}/160")
        print(f"  curl -s -H 'Range: bytes=0-99' {edge}/v1/tracks/{first}/160 | xxd | head")
        print(f"  ffplay {edge}/v1/tracks/{first}/320")
        print(f"  ffmpeg -ss 20 -i {edge}/v1/tracks/{first}/160 -t 5 clip.wav   # a seek")
        print(f"  curl -s {edge}/metrics | grep ^encore_")
        print("Tracks: " + ", ".join(track_ids) + "\n", flush=True)
        serve(settings, print_urls=False)
    finally:
        s3.stop()
