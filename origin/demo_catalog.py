"""A synthetic catalogue: distinct tracks made with ffmpeg's lavfi sources, ingested for real.

Each track gets its own tones, noise and length, and one of a spread of licences over a few
regions and windows, so a demo edge shows allowed, denied and not-yet-released tracks.
"""

from __future__ import annotations

import random
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from origin.ffmpeg import run_ffmpeg
from origin.ingest import IngestJob, IngestResult, ingest
from origin.ladder import Rung
from origin.license import LicenseChange

# (allow, deny, window start and end in days from now); the first is worldwide, so a demo's
# first track plays wherever the edge is.
LICENCE_SPREAD: tuple[tuple[str, str, int | None, int | None], ...] = (
    ("*", "", None, None),
    ("SE,NO,DK,FI,IS", "", None, None),
    ("*", "US", None, None),
    ("DE,AT,CH", "", None, None),
    ("SE,NO", "", -30, 335),
    ("*", "", 7, None),  # announced, not released yet
    ("GB,IE", "", -365, -1),  # expired
)


def demo_license(index: int, now: datetime) -> LicenseChange:
    allow, deny, start, end = LICENCE_SPREAD[index % len(LICENCE_SPREAD)]
    day = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return LicenseChange(
        allow=tuple(allow.split(",")),
        deny=tuple(deny.split(",")) if deny else (),
        not_before=None if start is None else day + timedelta(days=start),
        not_after=None if end is None else day + timedelta(days=end),
    )


async def generate_source(path: Path, seconds: int, rng: random.Random) -> None:
    """Two tones, a slow tremolo and pink noise: distinct audio for each draw, cheap to make."""
    low, high = rng.randint(110, 440), rng.randint(500, 2000)
    tremolo = rng.uniform(0.5, 4.0)
    graph = (
        f"sine=frequency={low}:duration={seconds}[a];"
        f"sine=frequency={high}:duration={seconds},tremolo=f={tremolo:.2f}:d=0.6[b];"
        f"anoisesrc=color=pink:amplitude=0.08:duration={seconds}:seed={rng.randint(1, 10**6)}[c];"
        "[a][b][c]amix=inputs=3[out]"
    )
    await run_ffmpeg(
        "-filter_complex", graph, "-map", "[out]", "-ar", "44100", "-ac", "2", "-c:a", "flac",
        str(path),
    )  # fmt: skip


async def make_demo_catalog(
    client: Any,
    bucket: str,
    *,
    tracks: int,
    ladder: tuple[Rung, ...],
    part_bytes: int,
    seed: int = 1,
    durations: tuple[int, int] = (30, 300),
    say: Callable[[str], None] = lambda _: None,
    on_result: Callable[[IngestResult], None] = lambda _: None,
) -> list[IngestResult]:
    rng = random.Random(seed)  # noqa: S311 - synthetic audio, not security
    now = datetime.now(UTC)
    results = []
    for index in range(tracks):
        seconds = rng.randint(*durations)
        with tempfile.TemporaryDirectory(prefix="encore-demo-") as tmp:
            source = Path(tmp) / f"demo-{index + 1:03d}.flac"
            await generate_source(source, seconds, rng)
            job = IngestJob(
                source=source,
                track_id=f"demo-{index + 1:03d}",
                title=f"Demo tone {index + 1}",
                artist="Encore synthesiser",
                license=demo_license(index, now),
            )
            result = await ingest(
                client, bucket, job, ladder=ladder, part_bytes=part_bytes, say=say
            )
            on_result(result)
            results.append(result)
    return results
