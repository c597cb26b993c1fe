"""Real audio for tests: sources made with ffmpeg's lavfi generators, and decoding checks."""

from __future__ import annotations

import subprocess
from pathlib import Path

from origin.ffmpeg import ffmpeg_binary

_ENCODERS = {".wav": "pcm_s16le", ".flac": "flac", ".mp3": "libmp3lame", ".ogg": "libvorbis"}


def make_source(
    path: Path, seconds: float, *, frequency: int = 440, tags: dict[str, str] | None = None
) -> Path:
    """A tone over pink noise (the noise keeps encoders honest about bitrate), in the format
    the file name's extension asks for."""
    graph = (
        f"sine=frequency={frequency}:duration={seconds}[a];"
        f"anoisesrc=color=pink:amplitude=0.1:duration={seconds}:seed={frequency}[b];"
        "[a][b]amix=inputs=2[out]"
    )
    metadata = [
        arg for key, value in (tags or {}).items() for arg in ("-metadata", f"{key}={value}")
    ]
    subprocess.run(
        [
            ffmpeg_binary(), "-hide_banner", "-loglevel", "error", "-y",
            "-filter_complex", graph, "-map", "[out]", "-ar", "44100", "-ac", "2",
            "-c:a", _ENCODERS[path.suffix], *metadata, str(path),
        ],
        check=True,
    )  # fmt: skip
    return path


def decode(data: bytes | None = None, *, url: str = "", seek_s: float = 0.0) -> tuple[float, str]:
    """Decode Ogg ``data`` (or ``url``) to PCM; (seconds decoded, ffmpeg's error output).

    ``-xerror`` makes any decode error fatal, so an empty error output means a clean decode.
    """
    source = ["-f", "ogg", "-i", "pipe:0"] if data is not None else ["-ss", str(seek_s), "-i", url]
    result = subprocess.run(
        [
            ffmpeg_binary(), "-hide_banner", "-nostdin", "-v", "error", "-xerror", *source,
            "-f", "s16le", "-ac", "1", "-ar", "8000", "pipe:1",
        ],
        input=data,
        capture_output=True,
        timeout=120,
        check=False,
    )  # fmt: skip
    errors = result.stderr.decode(errors="replace").strip()
    if result.returncode != 0 and not errors:
        errors = f"ffmpeg exited with {result.returncode}"
    return len(result.stdout) / 2 / 8000, errors
