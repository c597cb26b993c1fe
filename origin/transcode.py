"""Transcode one source file into every rung of the ladder, then index each rendition.

One ffmpeg process decodes the source once and feeds every encoder. Output is bit-exact
(fixed Ogg serial numbers, no encoder tags, no source tags), so the same source and ladder give
the same bytes and the same content hashes: re-ingesting unchanged audio uploads nothing.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from origin.ffmpeg import FfmpegError, run_ffmpeg
from origin.ladder import Rung
from origin.ogg import OggError, analyse
from origin.publish import RenditionFile
from origin.seek_table import build_seek_table

CHANNELS = 2  # every rendition is stereo, so players switch rungs without a layout change
PAGE_DURATION_US = 500_000  # Ogg pages of at most 0.5 s: seek points well under 1 s apart


class SourceError(ValueError):
    """The source file cannot be ingested; the message says why, in one line."""


PROBE_SECONDS = 2


async def probe_source(source: Path) -> dict[str, str]:
    """The source's global tags (title, artist, ...), after decoding its first seconds of audio:
    SourceError, in one line, if there is no audio ffmpeg can decode."""
    try:
        out = await run_ffmpeg(
            "-xerror", "-i", str(source), "-map", "0:a:0", "-t", str(PROBE_SECONDS),
            "-c:a", "pcm_s16le", "-f", "ffmetadata", "-",
        )  # fmt: skip
    except FfmpegError as exc:
        raise SourceError(_describe(source, exc)) from None
    return _parse_ffmetadata(out.decode(errors="replace"))


def _describe(source: Path, error: FfmpegError) -> str:
    if "Invalid data found when processing input" in error.stderr:
        return f"{source}: not an audio file ffmpeg can read"
    if "matches no streams" in error.stderr:
        return f"{source}: has no audio stream"
    return f"{source}: ffmpeg cannot decode it: {error}"


def _parse_ffmetadata(text: str) -> dict[str, str]:
    tags: dict[str, str] = {}
    for line in text.splitlines()[1:]:
        if line.startswith("["):
            break  # per-stream and chapter sections follow the global tags
        key, sep, value = line.partition("=")
        if sep and not line.startswith((";", "#")):
            tags[key.strip().lower()] = _unescape(value)
    return tags


def _unescape(value: str) -> str:
    out, escaped = [], False
    for char in value:
        if escaped or char != "\\":
            out.append(char)
            escaped = False
        else:
            escaped = True
    return "".join(out).strip()


def _encode_args(rung: Rung, out: Path) -> list[str]:
    return [
        "-map", "0:a:0",
        "-map_metadata", "-1",
        "-c:a", rung.codec.encoder,
        *rung.codec.encoder_args(rung.kbps),
        "-ar", str(rung.codec.sample_rate),
        "-ac", str(CHANNELS),
        "-flags:a", "+bitexact",
        "-fflags", "+bitexact",
        "-page_duration", str(PAGE_DURATION_US),
        str(out),
    ]  # fmt: skip


async def transcode(source: Path, workdir: Path, ladder: tuple[Rung, ...]) -> list[RenditionFile]:
    outputs = [workdir / f"{rung.name}.{rung.codec.extension}" for rung in ladder]
    args = ["-i", str(source)]
    for rung, out in zip(ladder, outputs, strict=True):
        args += _encode_args(rung, out)
    try:
        await run_ffmpeg(*args)
    except FfmpegError as exc:
        raise SourceError(_describe(source, exc)) from None
    return [
        await asyncio.to_thread(_index, rung, out)
        for rung, out in zip(ladder, outputs, strict=True)
    ]


def _index(rung: Rung, path: Path) -> RenditionFile:
    try:
        audio = analyse(path.read_bytes())
    except OggError as exc:
        raise SourceError(f"rendition {rung.name}: ffmpeg wrote a bad Ogg file: {exc}") from None
    if audio.codec != rung.codec.name:
        raise SourceError(f"rendition {rung.name}: expected {rung.codec.name}, got {audio.codec}")
    if audio.duration_s <= 0:
        raise SourceError("the source holds no audio samples")
    return RenditionFile(
        name=rung.name,
        path=path,
        codec=audio.codec,
        content_type=rung.codec.content_type,
        extension=rung.codec.extension,
        bitrate_kbps=rung.kbps,
        sample_rate=audio.sample_rate,
        channels=audio.channels,
        duration_s=audio.duration_s,
        seek_table=build_seek_table(audio),
    )
