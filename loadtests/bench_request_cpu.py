"""The Python cost of one memory hit, without the network: a real edge app (real S3 server,
real manifest, slices warmed into memory, signed URLs and licensing on) answers requests fed
straight into its HTTP connection object, whose transport only counts bytes. What remains is
the edge's own per-request work (parsing, checks, planning, the head, metrics, the access log)
that a socket benchmark mixes with the kernel's.

    python -m loadtests.bench_request_cpu [--requests 20000] [--range 65536] [--tier memory|disk]
        [--profile N]

Prints µs per request; ``--profile N`` also prints cProfile's top N functions by own time.
``--tier disk`` turns the memory tier off, so every slice is read from the disk tier (its
files in the page cache, as a hot disk tier's are) by the general path, which runs on the
event loop: each request is fed, then the loop runs until it is answered.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import dataclasses
import io
import pstats
import tempfile
import time
from pathlib import Path
from typing import Any

from edge.access.signing import signed_query
from edge.http.listener import limits_of
from edge.http.protocol import HttpConnection
from edge.runtime.app import EdgeApp
from edge.telemetry.access_log import AccessLog
from edge.telemetry.answers import Answers
from loadtests.edge_process import publish_random
from origin.local_s3 import LocalS3
from origin.settings import load_settings

SECRET = "bench-request-cpu-secret"
OBJECT_BYTES = 4 * 1024 * 1024


class CountingAnswers(Answers):
    """The listener's observer, counting answers (a disk hit completes on a later turn)."""

    count = 0
    _waiter: asyncio.Future[None] | None = None

    def answered(self, request: Any, status: int, outcome: str, body_bytes: int) -> None:
        self.count += 1
        super().answered(request, status, outcome, body_bytes)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def next_answer(self) -> None:
        self._waiter = asyncio.get_running_loop().create_future()
        await self._waiter


class CountingTransport:
    """Enough of an asyncio transport for :class:`HttpConnection`: writes are counted."""

    def __init__(self) -> None:
        self.sent = 0

    def write(self, data: bytes | memoryview) -> None:
        self.sent += len(data)

    def writelines(self, chunks: Any) -> None:
        for chunk in chunks:
            self.sent += len(chunk)

    def get_write_buffer_size(self) -> int:
        return 0

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def is_closing(self) -> bool:
        return False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 40000) if name == "peername" else default

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass


async def run(args: argparse.Namespace, endpoint: str, bucket: str, workdir: Path) -> None:
    base = load_settings(None, env={})
    settings = dataclasses.replace(
        base,
        origin=dataclasses.replace(base.origin, endpoint_url=endpoint, bucket=bucket),
        edge=dataclasses.replace(base.edge, region="SE"),
        auth=dataclasses.replace(base.auth, signing_keys={"k1": SECRET}),
        cache=dataclasses.replace(
            base.cache,
            disk_bytes=0 if args.tier == "memory" else 64 * 1024**2,
            disk_path=str(workdir / "disk"),
            memory_bytes=64 * 1024**2 if args.tier == "memory" else 0,
            prefetch_slices=0 if args.tier == "disk" else base.cache.prefetch_slices,
        ),
    )
    app = EdgeApp(settings)
    await app.start()
    try:
        path = "/v1/tracks/cpu-bench/320"
        target = f"{path}?{signed_query(SECRET, 'k1', path, int(time.time()) + 3600)}"
        request = (
            f"GET {target} HTTP/1.1\r\nHost: edge\r\nUser-Agent: bench\r\n"
            f"Range: bytes=1048576-{1048576 + args.range - 1}\r\nX-Client-Region: SE\r\n\r\n"
        ).encode()
        log = AccessLog(str(workdir / "access.log"), "text")
        loop = asyncio.get_running_loop()
        answers = CountingAnswers(log)
        conn = HttpConnection(app.handler(), answers, limits_of(settings.server), loop)
        transport = CountingTransport()
        conn.connection_made(transport)  # type: ignore[arg-type]

        async def serve(requests: int) -> None:
            for _ in range(requests):
                answered = answers.count
                conn.data_received(request)
                if answers.count == answered:  # not answered at once: a later turn will
                    await answers.next_answer()

        for _ in range(50):  # warm: manifest loaded, slices cached
            conn.data_received(request)
            await asyncio.sleep(0.01)
        for _ in range(3):
            started, sent = time.perf_counter(), transport.sent
            await serve(args.requests)
            elapsed = time.perf_counter() - started
            log.flush()
            per_request = (transport.sent - sent) / args.requests
            print(f"{elapsed / args.requests * 1e6:7.1f} µs per request ({per_request:.0f} bytes)")
        if args.profile:
            profile = cProfile.Profile()
            profile.enable()
            await serve(args.requests)
            profile.disable()
            out = io.StringIO()
            pstats.Stats(profile, stream=out).sort_stats(args.sort).print_stats(args.profile)
            print(out.getvalue())
        log.close()
    finally:
        await app.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--range", type=int, default=65_536, help="bytes per range (65536)")
    parser.add_argument("--tier", choices=("memory", "disk"), default="memory")
    parser.add_argument("--profile", type=int, default=0, metavar="N")
    parser.add_argument("--sort", default="tottime", help="cProfile order (tottime)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="encore-cpu-") as tmp:
        workdir = Path(tmp)
        server = LocalS3(workdir / "s3", log_path=workdir / "rclone.log")
        server.start()
        try:
            import os  # noqa: PLC0415

            os.environ.update(server.credentials_env())
            bucket = "audio"
            settings = load_settings(None, env={"ENCORE_ORIGIN__ENDPOINT_URL": server.endpoint_url})

            async def create() -> None:
                from origin.s3 import open_s3_client  # noqa: PLC0415

                async with open_s3_client(settings.origin) as client:
                    await client.create_bucket(Bucket=bucket)

            asyncio.run(create())
            data = bytes(range(256)) * (OBJECT_BYTES // 256)
            publish_random(server.endpoint_url, bucket, workdir / "pub", {"cpu-bench": data})
            asyncio.run(run(args, server.endpoint_url, bucket, workdir))
        finally:
            server.stop()


if __name__ == "__main__":
    main()
