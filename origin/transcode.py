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
# Ogg pages of about 0.9 s: every page start is a seek point, and points stay under 1 s apart.
PAGE_DURATION_US = 900_000


class SourceError(ValueError):
    """The source file cannot be ingested; the message says why, in one line."""


PROBE_SECONDS = 2


async def probe_source(source: Path) -> dict[str, str]:
    """The source's global tags (title, artist, ...), after decoding its first seconds of audio:
    SourceError, in one line, if there is no audio ffmpeg can decode."""
    try:
        out = await run_ffmpeg(
            "-xerror", "-i", _input(source), "-map", "0:a:0", "-t", str(PROBE_SECONDS),
            "-c:a", "pcm_s16le", "-f", "ffmetadata", "-",
        )  # fmt: skip
    except FfmpegError as exc:
        raise SourceError(_describe(source, exc)) from None
    return parse_ffmetadata(out.decode(errors="replace"))


def _input(source: Path) -> str:
    # "file:" so that a name like "live:2024.flac" is not taken for a protocol.
    return f"file:{source.absolute()}"


def _describe(source: Path, error: FfmpegError) -> str:
    if "Invalid data found when processing input" in error.stderr:
        return f"{source}: not an audio file ffmpeg can read"
    if "matches no streams" in error.stderr:
        return f"{source}: has no audio stream"
    return f"{source}: ffmpeg cannot decode it: {error}"


def parse_ffmetadata(text: str) -> dict[str, str]:
    """The global ``key=value`` tags of ffmpeg's metadata format, escapes undone.

    A backslash escapes the next character (``=``, ``;``, ``#``, ``\\`` or a newline, which
    continues the value on the next line); sections (``[STREAM]``...) end the global part.
    """
    tags: dict[str, str] = {}
    for record in _records(text)[1:]:  # the first is the ";FFMETADATA1" header
        if record and record[0] == ("[", False):
            break
        if not record or record[0] in ((";", False), ("#", False)):
            continue
        split = next(
            (i for i, (char, escaped) in enumerate(record) if char == "=" and not escaped), None
        )
        if split is not None:
            key = "".join(char for char, _ in record[:split]).strip().lower()
            tags[key] = "".join(char for char, _ in record[split + 1 :]).strip()
    return tags


def _records(text: str) -> list[list[tuple[str, bool]]]:
    """Lines split at unescaped newlines, each character with whether it was escaped."""
    records: list[list[tuple[str, bool]]] = [[]]
    escaped = False
    for char in text:
        if escaped:
            records[-1].append((char, True))
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "\n":
            records.append([])
        else:
            records[-1].append((char, False))
    return records


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
    args = ["-i", _input(source)]
    for rung, out in zip(ladder, outputs, strict=True):
        args += _encode_args(rung, out)
    try:
        await run_ffmpeg(*args)
    except FfmpegError as exc:
        # The probe decoded this source, so this is rarely the source's fault: say what ffmpeg said.
        raise SourceError(f"{source}: transcoding failed: {exc}") from None
    return [
        await asyncio.to_thread(_index, source, rung, out)
        for rung, out in zip(ladder, outputs, strict=True)
    ]


def _index(source: Path, rung: Rung, path: Path) -> RenditionFile:
    try:
        audio = analyse(path.read_bytes())
    except OggError as exc:
        raise SourceError(f"{source}: rendition {rung.name} is a bad Ogg file: {exc}") from None
    if audio.codec != rung.codec.name:
        raise SourceError(f"rendition {rung.name}: expected {rung.codec.name}, got {audio.codec}")
    if audio.duration_s <= 0:
        raise SourceError(f"{source}: holds no audio samples")
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
