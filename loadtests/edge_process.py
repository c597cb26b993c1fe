"""An edge under test, for benchmarks: ``encore-edge serve`` as a child process with a TOML
config, /readyz, /metrics and a clean stop; and tracks of arbitrary bytes for it to serve.

Settings another branch may not have yet are dropped (and reported) rather than passed on,
so a benchmark written against a planned setting still runs against today's edge.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import os
import signal
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import TracebackType

from origin.license import License
from origin.local_s3 import free_port
from origin.publish import RenditionFile, TrackInfo, publish_track
from origin.s3 import open_s3_client
from origin.seek_table import SeekTable
from origin.settings import Settings, load_settings

Value = str | int | float | bool
Sections = dict[str, dict[str, Value]]


class EdgeProcessError(RuntimeError):
    """The edge did not start or answer; the message ends with the tail of its log."""


# --- config ------------------------------------------------------------------------------------


def supported(section: str, key: str) -> bool:
    """Whether this checkout's ``origin.settings`` knows ``section.key``."""
    defaults = Settings()
    if section not in {f.name for f in dataclasses.fields(defaults)}:
        return False
    return key in {f.name for f in dataclasses.fields(getattr(defaults, section))}


def parse_overrides(items: Iterable[str]) -> Sections:
    """``["cache.prefetch_slices=4", 'origin.bucket="x"']`` -> sections; values are TOML
    literals, and anything that is not one is taken as a string."""
    sections: Sections = {}
    for item in items:
        name, sep, raw = item.partition("=")
        section, dot, key = name.strip().partition(".")
        if not sep or not dot or not section or not key:
            raise ValueError(f"{item!r}: expected SECTION.KEY=VALUE")
        try:
            value: Value = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw
        sections.setdefault(section, {})[key] = value
    return sections


def merge(*layers: Sections) -> Sections:
    merged: Sections = {}
    for layer in layers:
        for section, values in layer.items():
            merged.setdefault(section, {}).update(values)
    return merged


def _toml_value(value: Value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(value)  # a JSON string is a valid TOML basic string


def render_config(sections: Sections) -> tuple[str, list[str]]:
    """(TOML text, ``section.key`` names dropped because this edge does not know them)."""
    lines: list[str] = []
    dropped: list[str] = []
    for section, values in sections.items():
        lines.append(f"[{section}]")
        for key, value in values.items():
            if supported(section, key):
                lines.append(f"{key} = {_toml_value(value)}")
            else:
                dropped.append(f"{section}.{key}")
    return "\n".join(lines) + "\n", dropped


# --- metrics -----------------------------------------------------------------------------------


def metric_lines(text: str, prefixes: Sequence[str]) -> list[str]:
    """Sample lines of a Prometheus text page whose name starts with one of ``prefixes``
    (``_created`` timestamps left out)."""
    found = []
    for line in text.splitlines():
        if not line or line.startswith("#") or not line.startswith(tuple(prefixes)):
            continue
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if not name.endswith("_created"):
            found.append(line)
    return found


def metric_values(text: str, prefixes: Sequence[str]) -> dict[str, float]:
    """``{'name{labels}': value}`` for the lines :func:`metric_lines` picks."""
    values: dict[str, float] = {}
    for line in metric_lines(text, prefixes):
        series, _, value = line.rpartition(" ")
        try:
            values[series] = float(value)
        except ValueError:
            continue
    return values


def metric_sum(values: dict[str, float], name: str) -> float | None:
    """The sum over every label set of ``name``, or None when the edge has no such metric."""
    hits = [v for series, v in values.items() if series.split("{", 1)[0] == name]
    return sum(hits) if hits else None


# --- the process -------------------------------------------------------------------------------


class EdgeProcess:
    """``python -m edge serve --config FILE`` on a free loopback port; use as a context manager.

    The child gets a session of its own, so a Ctrl-C in the terminal reaches only the benchmark,
    which then stops the edge (its workers included: the whole process group) on the way out.
    """

    def __init__(self, workdir: Path, sections: Sections, name: str = "edge") -> None:
        self.port = free_port()
        server: Sections = {"server": {"host": "127.0.0.1", "port": self.port}}
        text, self.dropped = render_config(merge(sections, server))
        workdir.mkdir(parents=True, exist_ok=True)
        self.config_path = workdir / f"{name}.toml"
        self.config_path.write_text(text)
        load_settings(self.config_path, env={}).check_serving()  # a bad config fails here, clearly
        self.log_path = workdir / f"{name}.log"
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def start(self, timeout_s: float = 30.0) -> EdgeProcess:
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "edge", "serve", "--config", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env={**os.environ, "PYTHONWARNINGS": "ignore"},
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise EdgeProcessError(self._failure(f"exited with {self._process.returncode}"))
            try:
                with urllib.request.urlopen(f"{self.base_url}/readyz", timeout=2) as response:
                    if response.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.05)
        self.stop()
        raise EdgeProcessError(self._failure(f"not ready within {timeout_s:g} s"))

    def _failure(self, what: str) -> str:
        tail = self.log_path.read_text(errors="replace").splitlines()[-20:]
        return f"edge on port {self.port} {what}; log {self.log_path}:\n" + "\n".join(tail)

    def metrics_text(self, timeout_s: float = 5.0) -> str:
        try:
            with urllib.request.urlopen(f"{self.base_url}/metrics", timeout=timeout_s) as response:
                return bytes(response.read()).decode()
        except (urllib.error.URLError, OSError) as exc:
            raise EdgeProcessError(self._failure(f"/metrics failed: {exc}")) from exc

    def stop(self, timeout_s: float = 15.0) -> None:
        """SIGTERM to the edge's process group (it drains), SIGKILL after ``timeout_s``."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                return
            try:
                process.wait(timeout_s)
                return
            except subprocess.TimeoutExpired:
                continue

    def __enter__(self) -> EdgeProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def stop_on_sigterm() -> None:
    """Turn SIGTERM into KeyboardInterrupt, so ``finally`` blocks stop the child processes."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


# --- tracks ------------------------------------------------------------------------------------


def publish_random(
    endpoint_url: str,
    bucket: str,
    workdir: Path,
    tracks: dict[str, bytes],
    rendition: str = "320",
    bitrate_kbps: int = 320,
    concurrency: int = 8,
    timeout_s: float = 300.0,
) -> dict[str, str]:
    """Publish each ``{track_id: bytes}`` as a one-rendition track through the real publishing
    code (arbitrary bytes, a one-point seek table); returns ``{track_id: object key}``."""
    settings = load_settings(None, env={"ENCORE_ORIGIN__ENDPOINT_URL": endpoint_url})
    workdir.mkdir(parents=True, exist_ok=True)
    duration = {t: max(len(data) * 8 / (bitrate_kbps * 1000), 0.1) for t, data in tracks.items()}

    async def one(client: object, gate: asyncio.Semaphore, track_id: str, data: bytes) -> str:
        path = workdir / f"{track_id}-{rendition}.ogg"
        path.write_bytes(data)
        file = RenditionFile(
            rendition, path, "vorbis", "audio/ogg; codecs=vorbis", "ogg", bitrate_kbps, 44_100,
            2, math.ceil(duration[track_id] * 10) / 10, SeekTable.from_points(0, [(0.0, 0)]),
        )  # fmt: skip
        info = TrackInfo(track_id, "Bench", "Bench", License(("*",)))
        try:
            async with gate:
                result = await publish_track(
                    client, bucket, info, [file], part_bytes=settings.ingest.part_bytes
                )
        finally:
            path.unlink(missing_ok=True)
        return result.manifest.renditions[rendition].key

    async def run() -> dict[str, str]:
        gate = asyncio.Semaphore(concurrency)
        async with open_s3_client(settings.origin) as client:
            keys = await asyncio.gather(
                *(one(client, gate, track_id, data) for track_id, data in tracks.items())
            )
        return dict(zip(tracks, keys, strict=True))

    return asyncio.run(asyncio.wait_for(run(), timeout_s))


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0..100, nearest rank) of ``values``, or None if empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(math.ceil(q / 100 * len(ordered)), 1)
    return ordered[min(rank, len(ordered)) - 1]
