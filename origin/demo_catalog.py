"""A synthetic catalogue: tracks generated with ffmpeg's lavfi sources, encoded, and published."""

from __future__ import annotations

import random
import tempfile
from pathlib import Path
from typing import Any

from origin.ffmpeg import run_ffmpeg
from origin.manifest import Manifest
from origin.publish import EncodedRendition, publish_track

LADDER_KBPS = (96, 160, 320)


async def encode_vorbis(source: Path, workdir: Path, kbps: int) -> EncodedRendition:
    out = workdir / f"{kbps}.ogg"
    await run_ffmpeg("-i", str(source), "-vn", "-c:a", "libvorbis", "-b:a", f"{kbps}k", str(out))
    return EncodedRendition(
        name=str(kbps),
        path=out,
        codec="vorbis",
        content_type="audio/ogg",
        extension="ogg",
        bitrate_kbps=kbps,
    )


async def generate_tone(path: Path, seconds: float, rng: random.Random) -> None:
    """Two sine tones and a little noise: distinct audio for each seed, cheap to make."""
    low, high = rng.randint(110, 440), rng.randint(500, 2000)
    graph = (
        f"sine=frequency={low}:duration={seconds}[a];"
        f"sine=frequency={high}:duration={seconds}[b];"
        f"anoisesrc=color=pink:amplitude=0.05:duration={seconds}:seed={rng.randint(1, 10**6)}[c];"
        "[a][b][c]amix=inputs=3[out]"
    )
    await run_ffmpeg(
        "-filter_complex", graph, "-map", "[out]", "-ar", "44100", "-ac", "2", str(path)
    )


async def make_demo_catalog(
    client: Any, bucket: str, *, tracks: int, seed: int = 1, min_s: int = 30, max_s: int = 90
) -> list[Manifest]:
    rng = random.Random(seed)  # noqa: S311 - synthetic audio, not security
    manifests = []
    for n in range(1, tracks + 1):
        seconds = rng.randint(min_s, max_s)
        with tempfile.TemporaryDirectory(prefix="encore-demo-") as tmp:
            workdir = Path(tmp)
            source = workdir / "source.wav"
            await generate_tone(source, seconds, rng)
            renditions = [await encode_vorbis(source, workdir, kbps) for kbps in LADDER_KBPS]
            manifests.append(
                await publish_track(
                    client,
                    bucket,
                    track_id=f"demo-{n:03d}",
                    title=f"Demo tone {n}",
                    artist="Encore synthesiser",
                    duration_s=float(seconds),
                    renditions=renditions,
                )
            )
    return manifests
