"""ffmpeg from the imageio-ffmpeg wheel, run as a subprocess without blocking the event loop."""

from __future__ import annotations

import asyncio

import imageio_ffmpeg


class FfmpegError(RuntimeError):
    """ffmpeg failed; the message is its last meaningful stderr line."""


def ffmpeg_binary() -> str:
    return str(imageio_ffmpeg.get_ffmpeg_exe())


async def run_ffmpeg(*args: str) -> None:
    process = await asyncio.create_subprocess_exec(
        ffmpeg_binary(),
        "-hide_banner",
        "-nostdin",
        "-loglevel",
        "error",
        "-y",
        *args,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await process.communicate()
    if process.returncode != 0:
        lines = [line for line in stderr.decode(errors="replace").splitlines() if line.strip()]
        raise FfmpegError(lines[-1] if lines else f"ffmpeg exited with {process.returncode}")
