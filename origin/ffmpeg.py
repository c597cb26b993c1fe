"""ffmpeg from the imageio-ffmpeg wheel, run as a subprocess without blocking the event loop."""

from __future__ import annotations

import asyncio

import imageio_ffmpeg


class FfmpegError(RuntimeError):
    """ffmpeg failed; the message is its last meaningful stderr line, ``stderr`` all of it."""

    def __init__(self, message: str, stderr: str = "") -> None:
        super().__init__(message)
        self.stderr = stderr


def ffmpeg_binary() -> str:
    return str(imageio_ffmpeg.get_ffmpeg_exe())


async def run_ffmpeg(*args: str) -> bytes:
    """Run ffmpeg with ``args``; its standard output, or FfmpegError if it fails."""
    process = await asyncio.create_subprocess_exec(
        ffmpeg_binary(),
        "-hide_banner",
        "-nostdin",
        "-loglevel",
        "error",
        "-y",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, stderr = await process.communicate()
    except BaseException:
        # Cancelled (Ctrl-C, a timeout): do not leave an encoder running behind us.
        if process.returncode is None:
            process.kill()
            await process.wait()
        raise
    if process.returncode != 0:
        text = stderr.decode(errors="replace")
        lines = [line for line in text.splitlines() if line.strip()]
        raise FfmpegError(lines[-1] if lines else f"ffmpeg exited with {process.returncode}", text)
    return stdout
