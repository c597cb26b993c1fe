"""Ingest cost: wall time per minute of audio for the whole ladder, and bytes per rendition.

For each source length, alternating rounds time three things:
(a) plain ffmpeg encoding the same ladder in one process with libvorbis's default average
    bitrate mode: the reference, what the simplest transcoding pipeline pays;
(b) Encore's transcode step alone (managed bitrate held within 10% of nominal, bit-exact Ogg
    with short pages, then indexing every rendition's pages);
(c) a full ``encore-origin`` ingest into a local S3 server (probe, (b), hash, upload, manifest).
c/a is the whole price over the simplest pipeline, c/b what hashing and publishing add.
Absolute seconds on a shared machine mean little; the ratios are the result.

    python -m loadtests.bench_ingest [--seconds 60,180,300] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
from pathlib import Path

from loadtests.local_origin import local_origin
from origin.demo_catalog import generate_source
from origin.ffmpeg import run_ffmpeg
from origin.ingest import IngestJob, ingest
from origin.license import LicenseChange
from origin.manifest import Manifest
from origin.s3 import open_s3_client
from origin.settings import load_settings
from origin.transcode import transcode

BUCKET = "bench"


async def _reference(source: Path, workdir: Path, kbps: list[int]) -> float:
    args = ["-i", str(source)]
    for rate in kbps:
        args += [
            "-map",
            "0:a:0",
            "-c:a",
            "libvorbis",
            "-b:a",
            f"{rate}k",
            str(workdir / f"{rate}.ogg"),
        ]
    started = time.perf_counter()
    await run_ffmpeg(*args)
    return time.perf_counter() - started


async def _transcode(source: Path, workdir: Path) -> float:
    ladder = load_settings(None, env={}).ingest.ladder
    started = time.perf_counter()
    await transcode(source, workdir, ladder)
    return time.perf_counter() - started


async def _ingest(endpoint: str, source: Path, track_id: str) -> tuple[float, Manifest]:
    settings = load_settings(
        None, env={"ENCORE_ORIGIN__ENDPOINT_URL": endpoint, "ENCORE_ORIGIN__BUCKET": BUCKET}
    )
    job = IngestJob(source=source, track_id=track_id, license=LicenseChange(allow=("*",)))
    async with open_s3_client(settings.origin) as client:
        started = time.perf_counter()
        result = await ingest(
            client,
            BUCKET,
            job,
            ladder=settings.ingest.ladder,
            part_bytes=settings.ingest.part_bytes,
        )
        return time.perf_counter() - started, result.manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--seconds", default="60,180,300", help="source lengths (default 60,180,300)"
    )
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    lengths = [int(s) for s in args.seconds.split(",")]
    ladder = [r.kbps for r in load_settings(None, env={}).ingest.ladder]
    with local_origin(BUCKET, prefix="encore-bench-ingest-") as (tmp, s3):
        print(f"ladder {ladder} kbps Vorbis, {args.rounds} alternating rounds, median\n")
        print(
            f"{'audio':>7} {'a: ffmpeg':>10} {'b: encode':>10} {'c: ingest':>10} "
            f"{'c/a':>5} {'c/b':>5}  bytes per rendition (measured kbps)"
        )
        print(f"{'':>7} {'s/min':>10} {'s/min':>10} {'s/min':>10}")
        for seconds in lengths:
            source = tmp / f"source-{seconds}.flac"
            asyncio.run(generate_source(source, seconds, random.Random(seconds)))
            reference, encode, full = [], [], []
            manifest: Manifest | None = None
            for n in range(args.rounds):
                work = tmp / f"ref-{seconds}-{n}"
                work.mkdir()
                reference.append(asyncio.run(_reference(source, work, ladder)))
                encode.append(asyncio.run(_transcode(source, work)))
                elapsed, manifest = asyncio.run(
                    _ingest(s3.endpoint_url, source, f"bench-{seconds}-{n}")
                )
                full.append(elapsed)
            assert manifest is not None
            per_minute = 60 / seconds
            ref_s, encode_s, ingest_s = (
                statistics.median(times) for times in (reference, encode, full)
            )
            sizes = ", ".join(
                f"{r.name}: {r.size} ({r.measured_kbps})" for r in manifest.renditions.values()
            )
            print(
                f"{seconds:>6}s {ref_s * per_minute:>10.2f} {encode_s * per_minute:>10.2f} "
                f"{ingest_s * per_minute:>10.2f} {ingest_s / ref_s:>5.2f} "
                f"{ingest_s / encode_s:>5.2f}  {sizes}",
                flush=True,
            )


if __name__ == "__main__":
    main()
