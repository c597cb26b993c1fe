"""The origin side of ``loadtests.bench_listeners``: the latency proxy that counts what each
server asks of the bucket, the catalogue (ingested tracks, and copies of them under new ids),
nginx's view of each manifest, and the origin round trip."""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import json
import os
import random
import re
import statistics
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from edge.upstream.client_view import client_view
from loadtests import bench_hit_path as hit
from loadtests.edge_process import percentile
from origin import layout
from origin.demo_catalog import generate_source
from origin.ingest import IngestJob, ingest
from origin.license import LicenseChange
from origin.local_s3 import LocalS3
from origin.manifest import parse_manifest
from origin.s3 import open_s3_client
from origin.settings import load_settings
from tests.support.tcp_proxy import TcpProxy

BUCKET = hit.BUCKET
RTT_PROBES = 10
READY_OBJECT = "ready.txt"  # what nginx's readiness probe fetches (not a track's slice)


# --- the origin proxy, counting bytes too ------------------------------------------------------


def without_header(head: bytes, name: bytes) -> bytes:
    """A request head without its ``name`` header lines (matched without regard to case)."""
    lines = head.split(b"\r\n")
    prefix = name.lower() + b":"
    return b"\r\n".join(line for line in lines if not line.lower().startswith(prefix))


@dataclass
class _Connection:
    """One proxied connection: when each request not yet answered arrived (no pipelining)."""

    asked: deque[float] = field(default_factory=deque)


# The connection a task serves: set in _forward, seen by the response pump it starts.
_CONNECTION: contextvars.ContextVar[_Connection] = contextvars.ContextVar("connection")


class _Heads:
    """The client half of a proxied connection: notes when each request head arrives, and
    drops its Accept-Encoding when asked to."""

    def __init__(self, reader: asyncio.StreamReader, connection: _Connection, identity: bool):
        self._reader = reader
        self._connection = connection
        self._identity = identity

    async def readuntil(self, separator: bytes = b"\n") -> bytes:
        head = await self._reader.readuntil(separator)
        self._connection.asked.append(time.monotonic())
        return without_header(head, b"accept-encoding") if self._identity else head

    async def read(self, n: int = -1) -> bytes:
        return await self._reader.read(n)


class _Answers:
    """The upstream half: counts the bytes the origin sends back, and times each answer's
    first byte from its request's arrival (the injected latency included)."""

    def __init__(self, reader: asyncio.StreamReader, proxy: CountingProxy) -> None:
        self._reader = reader
        self._proxy = proxy
        self._connection = _CONNECTION.get()

    async def read(self, n: int = -1) -> bytes:
        chunk = await self._reader.read(n)
        if chunk and self._connection.asked:
            self._proxy.first_byte_s.append(time.monotonic() - self._connection.asked.popleft())
        self._proxy.response_bytes += len(chunk)
        return chunk


@dataclass
class CountingProxy(TcpProxy):
    """``TcpProxy`` (latency, request log) that also counts the origin's response bytes and
    times its answers' first bytes, as the cache sees them.

    ``identity``: drop Accept-Encoding from requests. ``rclone serve http`` gzips text
    answers on the fly (S3 never does), and nginx's slice module, getting a gzipped 206 for a
    manifest, sends a Content-Length of the whole file and a shorter body: the client hangs.
    """

    response_bytes: int = 0
    first_byte_s: list[float] = field(default_factory=list)
    identity: bool = False

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = _Connection()
        _CONNECTION.set(connection)  # this connection's task only
        heads = cast(asyncio.StreamReader, _Heads(reader, connection, self.identity))
        await super()._forward(heads, writer)  # readuntil and read are all it uses

    async def _pump_responses(
        self, up_reader: asyncio.StreamReader, writer: asyncio.StreamWriter, sent: list[int]
    ) -> None:
        answers = cast(asyncio.StreamReader, _Answers(up_reader, self))  # read() only
        await super()._pump_responses(answers, writer, sent)

    def paths(self, since: int) -> list[str]:
        """The paths of the GETs from request number ``since`` on."""
        return [r.path for r in list(self.requests)[since:] if r.method == "GET"]

    def snapshot(self) -> Snapshot:
        seen = list(self.requests)
        gets = sum(r.method == "GET" for r in seen)
        return Snapshot(len(seen), gets, self.response_bytes, len(self.first_byte_s))


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A proxy's counts so far: requests, GETs, response bytes, answers timed."""

    requests: int
    gets: int
    bytes: int
    answers: int


def origin_delta(proxy: CountingProxy, before: Snapshot) -> dict[str, Any]:
    """What went through ``proxy`` since ``before``: requests, GETs, bytes, the tracks whose
    manifests were fetched, and the answers' first-byte times."""
    after = proxy.snapshot()
    times = proxy.first_byte_s[before.answers : after.answers]
    return {
        "requests": after.requests - before.requests,
        "gets": after.gets - before.gets,
        "bytes": after.bytes - before.bytes,
        "cold_tracks": len(manifest_tracks(proxy.paths(before.requests))),
        "ttfb_p50_ms": _ms(percentile(times, 50)),
        "ttfb_p95_ms": _ms(percentile(times, 95)),
    }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


# --- the catalogue -----------------------------------------------------------------------------


def track_lengths(count: int, low: int, high: int, seed: int) -> list[int]:
    rng = random.Random(seed)
    return [rng.randint(low, high) for _ in range(count)]


def ingest_catalogue(s3: LocalS3, tmp: Path, lengths: Sequence[int], seed: int) -> list[str]:
    """Make and ingest one track per length, two at a time (ffmpeg runs in subprocesses);
    their ids, in popularity order (the first is the most played)."""
    settings = load_settings(
        None, env={"ENCORE_ORIGIN__ENDPOINT_URL": s3.endpoint_url, "ENCORE_ORIGIN__BUCKET": BUCKET}
    )
    ids = [f"cold-{n + 1:03d}" for n in range(len(lengths))]
    sources = tmp / "sources"
    sources.mkdir()

    async def one(client: Any, gate: asyncio.Semaphore, track_id: str, seconds: int) -> None:
        async with gate:
            source = sources / f"{track_id}.flac"
            await generate_source(source, seconds, random.Random(f"{seed}-{track_id}"))
            job = IngestJob(source=source, track_id=track_id, license=LicenseChange(allow=("*",)))
            await ingest(
                client,
                BUCKET,
                job,
                ladder=settings.ingest.ladder,
                part_bytes=settings.ingest.part_bytes,
            )
            source.unlink()

    async def run() -> None:
        gate = asyncio.Semaphore(2)
        async with open_s3_client(settings.origin) as client:
            await asyncio.gather(
                *(one(client, gate, t, s) for t, s in zip(ids, lengths, strict=True))
            )

    asyncio.run(asyncio.wait_for(run(), 600))
    return ids


def publish_copies(bucket_dir: Path, track_ids: Sequence[str], copies: int) -> list[str]:
    """Every track again under ``copies - 1`` new ids (``<id>-c02``...): its audio objects hard
    linked to their keys under the new id, its manifest written with ``origin.manifest`` (the
    schema-checked write side). Distinct ids are distinct objects to both caches, so the
    catalogue is large without ingesting each track; the ids, originals first."""
    catalogue = list(track_ids)
    for number in range(2, copies + 1):
        for track_id in track_ids:
            stored = (bucket_dir / layout.manifest_key(track_id)).read_bytes()
            manifest = parse_manifest(stored, track_id)
            copy_id = f"{track_id}-c{number:02d}"
            renditions = {}
            for name, rendition in manifest.renditions.items():
                extension = rendition.key.rsplit(".", 1)[-1]
                key = layout.audio_key(copy_id, name, rendition.sha256, extension)
                (bucket_dir / key).parent.mkdir(parents=True, exist_ok=True)
                os.link(bucket_dir / rendition.key, bucket_dir / key)
                renditions[name] = dataclasses.replace(rendition, key=key)
            copy = dataclasses.replace(manifest, track_id=copy_id, renditions=renditions)
            (bucket_dir / layout.manifest_key(copy_id)).write_bytes(copy.to_json())
            catalogue.append(copy_id)
    return catalogue


_MANIFEST_PATHS = (
    re.compile(r"/tracks/([^/?]+)/manifest\.json(?:\?|$)"),  # the edge's S3 GETs
    re.compile(r"/v1/tracks/([^/?]+)(?:\?|$)"),  # nginx's, of the views
)


def manifest_tracks(paths: Sequence[str]) -> set[str]:
    """The track ids whose manifests these origin request paths fetched: how many tracks a
    pass found cold (each is fetched once per edge worker, or once by nginx)."""
    found = set()
    for path in paths:
        for pattern in _MANIFEST_PATHS:
            if match := pattern.search(path):
                found.add(match.group(1))
                break
    return found


def nginx_view(stored_manifest: bytes, track_id: str) -> dict[str, Any]:
    """The manifest a player gets from the edge, with each rendition's URL the path of its
    object in the bucket: what a listener needs to play the track from nginx."""
    manifest = parse_manifest(stored_manifest, track_id)
    view = client_view(manifest)
    for rendition in view["renditions"]:
        rendition["url"] = "/" + manifest.renditions[rendition["name"]].key
    return view


def write_nginx_views(bucket_dir: Path, track_ids: Sequence[str]) -> None:
    """Each track's view at ``v1/tracks/<id>`` in the bucket folder (see the module doc)."""
    folder = bucket_dir / "v1" / "tracks"
    folder.mkdir(parents=True)
    for track_id in track_ids:
        stored = (bucket_dir / layout.manifest_key(track_id)).read_bytes()
        view = nginx_view(stored, track_id)
        (folder / track_id).write_text(json.dumps(view, separators=(",", ":")))
    (bucket_dir / READY_OBJECT).write_text("ok\n")


def measure_round_trip(proxy_url: str, key: str, probes: int = RTT_PROBES) -> float:
    """Median seconds of a 256 KiB range GET of ``key`` through the origin proxy."""
    times = []
    for _ in range(probes):
        started = time.perf_counter()
        hit.fetch(f"{proxy_url}/{key}", {"Range": f"bytes=0-{hit.SLICE - 1}"})
        times.append(time.perf_counter() - started)
    return statistics.median(times)
