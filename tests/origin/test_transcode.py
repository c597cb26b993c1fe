"""Transcoding with the real ffmpeg: input formats, bitrates, tags, bit-exact output, bad input."""

from __future__ import annotations

import asyncio
import hashlib
import random
import subprocess
from pathlib import Path

import pytest

from origin.ffmpeg import ffmpeg_binary
from origin.ladder import parse_ladder
from origin.publish import RenditionFile, measured_kbps
from origin.transcode import SourceError, parse_ffmetadata, probe_source, transcode
from tests.support.audio import make_source

ONE_RUNG = parse_ladder(["vorbis:96"])


@pytest.mark.parametrize("name", ["96", "160", "320", "64"])
def test_measured_bitrate_is_within_15_percent_of_nominal(
    encoded: dict[str, RenditionFile], name: str
) -> None:
    file = encoded[name]
    measured = measured_kbps(file.path.stat().st_size, file.duration_s)
    assert measured == pytest.approx(file.bitrate_kbps, rel=0.15)


@pytest.mark.parametrize("extension", [".wav", ".flac", ".mp3", ".ogg"])
def test_reads_common_formats(tmp_path: Path, extension: str) -> None:
    source = make_source(tmp_path / f"in{extension}", 4)
    (file,) = asyncio.run(transcode(source, tmp_path, ONE_RUNG))
    assert file.codec == "vorbis"
    assert file.duration_s == pytest.approx(4, abs=0.1)  # mp3 adds encoder padding


def test_same_source_gives_the_same_bytes(tmp_path: Path) -> None:
    source = make_source(tmp_path / "in.wav", 3)
    hashes = []
    for run in ("a", "b"):
        workdir = tmp_path / run
        workdir.mkdir()
        (file,) = asyncio.run(transcode(source, workdir, ONE_RUNG))
        hashes.append(hashlib.sha256(file.path.read_bytes()).hexdigest())
    assert hashes[0] == hashes[1]


def test_reads_title_and_artist_tags(tmp_path: Path) -> None:
    source = make_source(
        tmp_path / "tagged.flac", 1, tags={"title": "Hej = du; 1", "artist": "Sånggrupp"}
    )
    tags = asyncio.run(probe_source(source))
    assert (tags["title"], tags["artist"]) == ("Hej = du; 1", "Sånggrupp")


def test_non_audio_is_refused_in_one_line(tmp_path: Path) -> None:
    noise = tmp_path / "corrupt.flac"
    noise.write_bytes(random.Random(1).randbytes(100_000))
    with pytest.raises(SourceError, match=r"corrupt\.flac: not an audio file ffmpeg can read$"):
        asyncio.run(probe_source(noise))
    text = tmp_path / "notes.txt"
    text.write_text("not audio at all\n" * 100)  # ffmpeg reads text as a (video) terminal dump
    with pytest.raises(SourceError, match=r"notes\.txt: has no audio stream$"):
        asyncio.run(probe_source(text))


def test_video_without_audio_is_refused(tmp_path: Path) -> None:
    video = tmp_path / "silent.mkv"
    subprocess.run(
        [ffmpeg_binary(), "-v", "error", "-f", "lavfi", "-i", "color=c=red:d=1", str(video)],
        check=True,
    )
    with pytest.raises(SourceError, match=r"silent\.mkv: has no audio stream$"):
        asyncio.run(probe_source(video))


def test_audio_with_no_samples_is_refused(tmp_path: Path) -> None:
    empty = tmp_path / "empty.wav"
    subprocess.run(
        [ffmpeg_binary(), "-v", "error", "-f", "lavfi", "-i", "anullsrc", "-t", "0", str(empty)],
        check=True,
    )
    with pytest.raises(SourceError, match="no audio samples"):
        asyncio.run(transcode(empty, tmp_path, ONE_RUNG))


def test_metadata_escapes_and_continued_lines() -> None:
    text = (
        ";FFMETADATA1\n"
        "title=Hello \\= World\\; x\n"
        "comment=line one\\\ntitle=not a tag\n"
        "Artist=A\\\\B\n"
        "; a comment\n"
        "[STREAM]\n"
        "title=a stream's title\n"
    )
    assert parse_ffmetadata(text) == {
        "title": "Hello = World; x",
        "comment": "line one\ntitle=not a tag",
        "artist": "A\\B",
    }
